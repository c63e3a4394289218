//! Each metric family's `# HELP` line, from `docs/metrics.md`'s table (its "what it
//! counts" column): one text for the operator reading the doc and the one reading a
//! scrape, and `promtool check metrics` wants a help text for every family.

/// `docs/metrics.md`, as built into the binary.
const DOC: &str = include_str!("../docs/metrics.md");

/// One documented family: name, type and help text.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: String,
}

/// The families of the doc's table: rows `| `name` | type | labels | what |`.
pub fn documented() -> Vec<Family> {
    DOC.lines()
        .filter_map(|line| {
            // No cell of the table holds a `|`: a row is its cells between bars.
            let cells: Vec<&str> = line.strip_prefix('|')?.strip_suffix('|')?.split('|').map(str::trim).collect();
            let [name, kind, _labels, help] = cells.as_slice() else { return None };
            let name = name.strip_prefix('`')?.strip_suffix('`')?;
            name.starts_with("foyer_").then(|| Family {
                name: name.to_owned(),
                kind: (*kind).to_owned(),
                // Markdown's code marks mean nothing in a scrape.
                help: help.replace('`', ""),
            })
        })
        .collect()
}

/// Gives the installed recorder every documented family's help text.
pub fn describe_all() {
    for Family { name, kind, help } in documented() {
        match kind.as_str() {
            "counter" => metrics::describe_counter!(name, help),
            "gauge" => metrics::describe_gauge!(name, help),
            // The exporter renders the `metrics` crate's histograms as summaries or
            // histograms, as configured.
            _ => metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_table_is_read() {
        let families = documented();
        let rows = DOC.lines().filter(|l| l.starts_with("| `foyer_")).count();
        assert_eq!(families.len(), rows, "{families:#?}");
        assert!(rows >= 20, "{rows} rows");
        let ready = families.iter().find(|f| f.name == "foyer_ready").expect("foyer_ready");
        assert_eq!(ready.kind, "gauge");
        assert!(ready.help.starts_with("1 once the start-up handshake"), "{}", ready.help);
        for family in &families {
            assert!(["counter", "gauge", "summary", "histogram"].contains(&family.kind.as_str()), "{family:?}");
            assert!(!family.help.is_empty() && !family.help.contains('\n'), "{family:?}");
        }
    }
}
