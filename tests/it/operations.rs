//! Operations: every metric family against `docs/metrics.md`, the JSON log shape with
//! request ids, the status page's login, and the `!foyer` admin commands in Matrix.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, WEBHOOK_SECRET, chrono_now, envelope, metric_in, sign_webhook, sqlite_query},
    random_token, repo_root,
    synapse::Synapse,
    unique,
    users::TestUser,
};

/// A reservation starting `starts_in` seconds from now, its room opening `open_before`
/// seconds before that.
fn reservation(id: &str, starts_in: i64, open_before: u64) -> Value {
    let at = |s: i64| (Utc::now() + chrono::Duration::seconds(s)).to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({"reservation_id": id, "title": format!("Show {id}"), "starts_at": at(starts_in),
           "ends_at": at(starts_in + 3600), "chat": {"open_before_seconds": open_before}})
}

/// `# TYPE name type` lines of the exposition.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// The families `docs/metrics.md` documents: its table's rows, name and type.
fn documented() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(repo_root().join("docs/metrics.md")).expect("docs/metrics.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `foyer_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once('`')?;
            let kind = rest.split('|').nth(1)?.trim();
            Some((format!("foyer_{name}"), kind.to_owned()))
        })
        .collect()
}

/// The sum of every sample of a family (all label sets), by its sample name.
fn total(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(sample).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_family_is_documented_present_and_moves() {
    // A Synapse of its own: the test stops it to make Foyer retry.
    let synapse = Synapse::dedicated(1);
    let foyer = TestFoyer::start_on(&synapse).await;
    let before = foyer.metrics_text().await;
    let alice = synapse.create_user("alice").await;
    let bob = synapse.create_user("bob").await;

    let id = unique("metrics");
    foyer.accept("reservation.created", reservation(&id, 3, 2)).await;
    foyer.grant(&id, &[("t-alice", &alice.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(20), "alice's invite", || async {
        alice.invited_rooms().await.contains(&room).then_some(())
    })
    .await;
    assert_eq!(alice.join(&room).await.0, 200);
    // A message longer than the default rules allow (500 characters): the bot redacts it,
    // which the redaction delay's family counts.
    let (status, long) = alice.send_text(&room, &"x".repeat(501)).await;
    assert_eq!(status, 200, "{long}");
    let long = long["event_id"].as_str().expect("event_id").to_owned();
    eventually(Duration::from_secs(30), "the long message redacted", || async {
        let path =
            format!("/_matrix/client/v3/rooms/{}/event/{}", crate::common::enc(&room), crate::common::enc(&long));
        let (_, event) = alice.get(&path).await;
        (!event["unsigned"]["redacted_because"].is_null()).then_some(())
    })
    .await;

    // The homeserver goes away while a new ticket must be invited: steps fail, retry.
    tokio::task::block_in_place(|| synapse.stop());
    foyer.grant(&id, &[("t-bob", &bob.user_id)]).await;
    eventually(Duration::from_secs(30), "a retried homeserver request", || async {
        (total(&foyer.metrics_text().await, "foyer_homeserver_retries_total") > 0.0).then_some(())
    })
    .await;
    tokio::task::block_in_place(|| synapse.start_again());
    eventually(Duration::from_secs(90), "bob's invite after the outage", || async {
        bob.invited_rooms().await.contains(&room).then_some(())
    })
    .await;

    // A reservation whose alias a room without Foyer's marker holds: its opening fails
    // (and is retried) until that room counts as abandoned, a minute after Foyer first
    // sees it. It comes last, so that the minute covers only the reading below, not the
    // outage above (which can take longer than that on a busy machine).
    let blocked = unique("blocked");
    foyer.squat_alias(&alice, &blocked).await;
    foyer.accept("reservation.created", reservation(&blocked, 3, 2)).await;

    // /metrics between two reads of both reservations (equal reads: nothing moved while
    // /metrics was read). It recounts phases at most every 15 s, so its phase gauge is
    // awaited until it counts what the read API says of the two.
    let failed_opening = "foyer_lifecycle_steps_total{step=\"create_room\",result=\"failed\"}";
    let phases = ["scheduled", "open", "live", "ended", "archived", "cancelled"];
    let (after, (record, blocked_record)) =
        eventually(Duration::from_secs(40), "every documented family in /metrics, phases as read", || async {
            let view = || async { (foyer.reservation(&id).await.1, foyer.reservation(&blocked).await.1) };
            let before = view().await;
            let text = foyer.metrics_text().await;
            let view_after = view().await;
            let missing: Vec<String> =
                documented().into_keys().filter(|name| !families(&text).contains_key(name)).collect();
            let blocked_tried = text.contains(failed_opening);
            let counted: Vec<Option<f64>> =
                phases.iter().map(|p| metric_in(&text, &format!("foyer_reservations{{phase=\"{p}\"}}"))).collect();
            let read: Vec<Option<f64>> = phases
                .iter()
                .map(|p| Some([&view_after.0, &view_after.1].iter().filter(|r| r["phase"] == *p).count() as f64))
                .collect();
            if !missing.is_empty() || !blocked_tried || before != view_after || counted != read {
                eprintln!(
                    "[metrics] still missing {missing:?}; blocked opening tried: {blocked_tried}; \
                     phases counted {counted:?}, read {read:?}"
                );
                return None;
            }
            Some((text, view_after))
        })
        .await;

    // The doc and the code agree, both ways, with the same types.
    assert_eq!(families(&after), documented(), "docs/metrics.md and /metrics differ");

    // Each family moved (or holds the value the scenario implies).
    let moved = |sample: &str| total(&after, sample) > total(&before, sample);
    for counter in [
        "foyer_webhooks_total",
        "foyer_lifecycle_steps_total",
        "foyer_homeserver_retries_total",
        "foyer_homeserver_events_total",
        "foyer_appservice_transactions_total",
        "foyer_homeserver_request_duration_seconds_count",
        "foyer_lifecycle_due_lateness_seconds_count",
        "foyer_lifecycle_open_lateness_seconds_count",
        "foyer_intake_batch_size_count",
    ] {
        assert!(moved(counter), "{counter} did not move:\n{after}");
    }
    let accepted = "foyer_webhooks_total{type=\"ticket.granted\",result=\"accepted\"}";
    assert_eq!(metric_in(&after, accepted), Some(2.0), "{after}");
    assert_eq!(metric_in(&after, "foyer_lifecycle_steps_total{step=\"create_room\",result=\"ok\"}"), Some(1.0));
    assert!(after.contains("foyer_lifecycle_steps_total{step=\"create_room\",result=\"failed\"}"), "{after}");
    assert!(after.contains("foyer_homeserver_request_duration_seconds_bucket{endpoint=\"create_room\",le=\"0.005\"}"));
    assert!(after.contains("foyer_homeserver_retries_total{endpoint=\""), "{after}");
    // One room: the blocked reservation had none yet when /metrics was read (its read came after).
    assert_eq!(
        (record["phase"].as_str(), &blocked_record["room_id"]),
        (Some("open"), &Value::Null),
        "{blocked_record}"
    );
    assert_eq!(metric_in(&after, "foyer_ready"), Some(1.0));
    assert_eq!(metric_in(&after, "foyer_appservice_pings_total"), Some(1.0));
    let age = metric_in(&after, "foyer_homeserver_last_transaction_age_seconds").expect("transaction age");
    assert!((0.0..60.0).contains(&age), "age {age}");
}

fn json_lines(log: &str) -> Vec<Value> {
    log.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("a log line is JSON")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_reservation_room_and_request_ids() {
    let foyer = TestFoyer::start_with(|yaml| yaml + "logging:\n  format: json\n", &[]).await;
    let id = unique("logs");
    let body = envelope("reservation.created", reservation(&id, 3, 2));
    let (webhook_id, now) = (format!("msg_{}", random_token()), chrono_now());
    let signature = sign_webhook(WEBHOOK_SECRET, &webhook_id, now, &body);
    let resp = foyer
        .http
        .post(format!("{}/webhooks/v1/events", foyer.base_url))
        .header("content-type", "application/json")
        .header("webhook-id", &webhook_id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .header("x-request-id", "platform-req-42")
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["x-request-id"], "platform-req-42", "the request id is echoed");
    // Without one (or with a hostile one), Foyer makes its own.
    let resp = foyer.http.get(format!("{}/health/live", foyer.base_url)).header("x-request-id", "a b\"c").send().await;
    let made = resp.expect("live").headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(made.len(), 16, "{made}");
    assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");

    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    let lines = eventually(Duration::from_secs(10), "the opening in the log", || async {
        let lines = json_lines(&foyer.log());
        lines.iter().any(|l| l["fields"]["message"] == "room opened").then_some(lines)
    })
    .await;
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string(), "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let stored = lines.iter().find(|l| l["fields"]["message"] == "webhook stored").expect("webhook stored line");
    eprintln!("[logs] {}", foyer.log().lines().find(|l| l.contains("webhook stored")).unwrap_or(""));
    assert_eq!(stored["fields"]["reservation_id"], json!(id), "{stored}");
    assert_eq!(stored["fields"]["webhook_id"], json!(webhook_id), "{stored}");
    let spans = stored["spans"].as_array().expect("spans");
    assert!(
        spans.iter().any(|s| s["request_id"] == "platform-req-42" && s["path"] == "/webhooks/v1/events"),
        "{stored}"
    );
    let opened = lines.iter().find(|l| l["fields"]["message"] == "room opened").expect("room opened line");
    assert_eq!((&opened["fields"]["reservation_id"], &opened["fields"]["room_id"]), (&json!(id), &json!(room)));
    assert!(!foyer.log().lines().any(|l| !l.trim().is_empty() && !l.starts_with('{')), "every line is JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_logs_carry_the_request_id_too() {
    let foyer = TestFoyer::start().await;
    let id = unique("pretty");
    foyer.accept("reservation.created", reservation(&id, 3600, 60)).await;
    let line = eventually(Duration::from_secs(10), "the stored webhook in the log", || async {
        foyer.log().lines().find(|l| l.contains("webhook stored") && l.contains(&id)).map(str::to_owned)
    })
    .await;
    assert!(line.contains("request_id="), "{line}");
    assert!(
        line.contains(&format!("reservation_id=\"{id}\"")) || line.contains(&format!("reservation_id={id}")),
        "{line}"
    );
}

/// A client that keeps cookies, as a browser would.
fn browser_like() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_needs_the_token_and_lists_reservations_by_phase() {
    let foyer = TestFoyer::start().await;
    let (soon, later) = (unique("soon"), unique("later"));
    foyer.accept("reservation.created", reservation(&soon, 3, 2)).await;
    foyer.accept("reservation.created", reservation(&later, 7200, 60)).await;
    foyer.room_id(&soon, Duration::from_secs(30)).await;
    let client = browser_like();
    let url = format!("{}/status", foyer.base_url);

    let resp = client.get(&url).send().await.expect("status");
    assert_eq!(resp.status(), 401);
    let form = resp.text().await.expect("html");
    assert!(form.contains("<form method=post action=/status/login>") && form.contains("name=token"), "{form}");
    assert!(!form.contains(&soon), "nothing listed before login");

    let wrong = client.post(format!("{url}/login")).form(&[("token", "not-the-token")]).send().await.expect("login");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.expect("html").contains("That is not the API token"));

    let asked = Utc::now();
    let resp = client.post(format!("{url}/login")).form(&[("token", foyer.slot.api_token.as_str())]).send().await;
    let resp = resp.expect("login");
    assert_eq!(resp.status(), 200, "redirected to the page");
    let page = resp.text().await.expect("html");
    let answered = Utc::now();
    assert!(page.contains("<meta http-equiv=refresh content=5>"), "refreshes itself");
    assert!(!page.contains("<script"), "works without JavaScript");
    assert!(page.contains(&format!("<tr id=\"r-{soon}\" data-phase=open>")), "{page}");
    assert!(page.contains(&format!("<tr id=\"r-{later}\" data-phase=scheduled>")), "{page}");
    // `later` opens about 2 h from its webhook: its own row counts down to its opens_at, in
    // whole minutes as of the moment the page was made (between the login and its answer).
    let row = page.split(&format!("<tr id=\"r-{later}\"")).nth(1).and_then(|r| r.split("</tr>").next()).unwrap_or("");
    let opens = row.split("<td>").nth(3).unwrap_or("");
    let opens_at = foyer.reservation(&later).await.1["opens_at"].as_str().map(str::to_owned).unwrap_or_default();
    let opens_at = DateTime::parse_from_rfc3339(&opens_at).expect("opens_at").with_timezone(&Utc);
    let countdown = |now: DateTime<Utc>| {
        let minutes = (opens_at - now).num_seconds() / 60;
        format!("in {} h {} min", minutes / 60, minutes % 60)
    };
    let (earliest, latest) = (countdown(answered), countdown(asked));
    assert!(
        opens.contains(&earliest) || opens.contains(&latest),
        "a countdown to opening ({earliest}–{latest}): {row}"
    );
    let alias = foyer.alias(&soon);
    assert!(page.contains(&format!("https://matrix.to/#/{}", alias.replace('#', "%23").replace(':', "%3A"))), "{page}");
    assert!(page.contains("0 joined, 0 invited"), "{page}");
    assert!(!page.contains(&foyer.slot.api_token), "the token never appears in the page");

    // A bearer token works too (for curl); logging out ends the cookie.
    let curl = foyer.http.get(&url).bearer_auth(&foyer.slot.api_token).send().await.expect("bearer");
    assert_eq!(curl.status(), 200);
    // The page's form is same-origin; a browser says so in Origin (and Sec-Fetch-Site).
    let out = client.post(format!("{url}/logout")).header("origin", &foyer.base_url).send().await.expect("logout");
    assert_eq!(out.status(), 401, "back at the login form");
    assert_eq!(client.get(&url).send().await.expect("status").status(), 401);
}

/// Admins reach Foyer at `appservice.public_url` (https, behind a proxy) while the
/// homeserver reaches it at `appservice.url` (plain http on the host): the status cookie
/// follows the public URL, `Secure` and `__Host-`. The status page and the claim page
/// carry a Content-Security-Policy that lets no other site frame them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_cookie_follows_the_public_url_and_no_page_can_be_framed() {
    let foyer = TestFoyer::start_with(
        |yaml| yaml.replacen("appservice:\n", "appservice:\n  public_url: https://foyer.example.org\n", 1),
        &[],
    )
    .await;
    let url = format!("{}/status", foyer.base_url);
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let login = no_redirect.post(format!("{url}/login")).form(&[("token", foyer.slot.api_token.as_str())]).send();
    let login = login.await.expect("login");
    assert_eq!(login.status(), 303);
    let cookie = login.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(cookie.starts_with("__Host-foyer_status=") && cookie.contains("; Secure"), "{cookie}");
    // The proxy speaks https to the browser and http to Foyer: the cookie it passes on
    // is taken under its `__Host-` name.
    let pair = cookie.split(';').next().expect("name=value");
    let page = no_redirect.get(&url).header("cookie", pair).send().await.expect("status");
    assert_eq!(page.status(), 200, "the session cookie is read under its https name");

    let policy = |resp: &reqwest::Response| {
        resp.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let claim = no_redirect.get(format!("{}/claim/ABCD-EFGH-JKLM", foyer.base_url)).send().await.expect("claim");
    let login_form = no_redirect.get(&url).send().await.expect("status");
    let refused = no_redirect.post(format!("{url}/logout")).send().await.expect("logout");
    for (what, status, csp) in [
        ("the status page", page.status(), policy(&page)),
        ("the login form", login_form.status(), policy(&login_form)),
        ("a refused logout", refused.status(), policy(&refused)),
        ("the claim page", claim.status(), policy(&claim)),
    ] {
        eprintln!("{what} ({status}): {csp}");
        assert!(csp.contains("default-src 'none'"), "{what} ({status}) runs and loads nothing: {csp:?}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what} ({status}) is never framed: {csp:?}");
    }
    assert_eq!((login_form.status().as_u16(), refused.status().as_u16(), claim.status().as_u16()), (401, 403, 404));
}

/// Sends `text` to the room and returns the bot's next notice there.
pub(crate) async fn ask(user: &TestUser, bot: &str, room: &str, text: &str) -> Value {
    let notices = |events: Vec<Value>| {
        events.into_iter().filter(|e| e["sender"] == bot && e["content"]["msgtype"] == "m.notice").collect::<Vec<_>>()
    };
    let before = notices(user.messages(room).await).len();
    assert_eq!(user.send_text(room, text).await.0, 200);
    let answer = eventually(Duration::from_secs(20), &format!("an answer to {text:?}"), || async {
        let now = notices(user.messages(room).await);
        (now.len() > before).then(|| now[0]["content"].clone())
    })
    .await;
    eprintln!("[admin] {} > {text}\n{}\n", user.user_id, answer["body"].as_str().unwrap_or(""));
    answer
}

/// The admin opens a direct chat with the bot; returns it once the bot has joined.
pub(crate) async fn direct_chat(foyer: &TestFoyer, admin: &TestUser) -> String {
    let bot = foyer.slot.bot_user_id();
    let (status, dm) = admin
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"invite": [bot], "is_direct": true, "preset": "trusted_private_chat"})),
        )
        .await;
    assert_eq!(status, 200, "{dm}");
    let dm = dm["room_id"].as_str().expect("room_id").to_owned();
    let bot_user = TestUser::bot(&foyer.slot);
    eventually(Duration::from_secs(20), "the bot to join the admin's room", || async {
        let (_, joined) = bot_user.get("/_matrix/client/v3/joined_rooms").await;
        joined["joined_rooms"].as_array()?.contains(&json!(dm)).then_some(())
    })
    .await;
    dm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_command_is_kept_through_crashes_and_answered_once() {
    let admin = Synapse::shared().create_user("opsadmin").await;
    let admin_id = admin.user_id.clone();
    let mut foyer = TestFoyer::start_with(move |yaml| yaml + &format!("admins: [\"{admin_id}\"]\n"), &[]).await;
    let id = unique("crashcmd");
    foyer.accept("reservation.created", reservation(&id, 7200, 60)).await;
    let dm = direct_chat(&foyer, &admin).await;

    // Foyer dies after taking the command and before answering it ...
    foyer.kill_and_restart_with(&[("FOYER_FAILPOINTS", "admin_before_answer")], true).await;
    let command = format!("!foyer open {id}");
    let (status, sent) = admin.send_text(&dm, &command).await;
    assert_eq!(status, 200, "{sent}");
    assert_ne!(foyer.wait_exit(Duration::from_secs(20)).await, 0, "the failpoint aborts");
    // ... then again after answering it and before dropping it from the inbox ...
    foyer.restart(&[("FOYER_FAILPOINTS", "admin_after_answer")]);
    assert_ne!(foyer.wait_exit(Duration::from_secs(60)).await, 0, "the failpoint aborts");
    // ... and the third start finds the command once more.
    foyer.restart(&[]);
    foyer.wait_ready().await;
    eventually(Duration::from_secs(30), "the room to open", || async {
        (foyer.reservation(&id).await.1["phase"] == "open").then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "the third start to handle the command", || async {
        (foyer.log().matches("admin command room_id=").count() == 3).then_some(())
    })
    .await;
    // Dropped from the inbox only once its (repeated) answer was sent.
    eventually(Duration::from_secs(20), "the inbox to be empty", || async {
        let left = sqlite_query(&foyer.dir().join("foyer.db"), "SELECT COUNT(*) FROM admin_inbox");
        (left.trim() == "0").then_some(())
    })
    .await;
    // Only the bot posts notices here; the admin writes text.
    let answers = admin.notices(&dm).await;
    assert_eq!(answers, [format!("Opening the room of `{id}` now.")], "one answer, the first one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_command_the_bot_in_a_direct_room_and_strangers_are_refused() {
    let hs = Synapse::shared();
    let (admin, stranger) = (hs.create_user("opsadmin").await, hs.create_user("stranger").await);
    let admin_id = admin.user_id.clone();
    let foyer = TestFoyer::start_with(move |yaml| yaml + &format!("admins: [\"{admin_id}\"]\n"), &[]).await;
    let bot = foyer.slot.bot_user_id();
    let (scheduled, other) = (unique("cmd"), unique("cmdother"));
    foyer.accept("reservation.created", reservation(&scheduled, 7200, 60)).await;
    foyer.accept("reservation.created", reservation(&other, 7200, 60)).await;

    let dm = direct_chat(&foyer, &admin).await;
    let bot_user = TestUser::bot(&foyer.slot);

    let help = ask(&admin, &bot, &dm, "!foyer help").await;
    assert_eq!(help["format"], "org.matrix.custom.html");
    assert!(help["body"].as_str().unwrap().contains("!foyer archive <reservation_id>"), "{help}");
    assert!(help["formatted_body"].as_str().unwrap().contains("<code>!foyer list [phase]</code>"), "{help}");

    let list = ask(&admin, &bot, &dm, "!foyer list scheduled").await;
    let text = list["body"].as_str().unwrap();
    assert!(text.contains("2 scheduled reservations:") && text.contains(&scheduled) && text.contains(&other), "{text}");
    assert!(text.contains("opens in 1 h 5") || text.contains("opens in 2 h"), "{text}");
    assert!(list["formatted_body"].as_str().unwrap().contains(&format!("<li><code>{scheduled}</code>")), "{list}");
    assert!(
        ask(&admin, &bot, &dm, "!foyer list live").await["body"].as_str().unwrap().contains("No live reservations.")
    );

    let show = ask(&admin, &bot, &dm, &format!("!foyer show {scheduled}")).await;
    let text = show["body"].as_str().unwrap();
    assert!(text.contains("Phase: scheduled") && text.contains("Last error: none"), "{text}");
    assert!(show["formatted_body"].as_str().unwrap().contains("<tr><th>Phase</th><td>scheduled</td></tr>"), "{show}");

    // Open now: the room exists long before its time.
    let opened = ask(&admin, &bot, &dm, &format!("!foyer open {scheduled}")).await;
    assert!(opened["body"].as_str().unwrap().contains(&format!("Opening the room of `{scheduled}` now.")), "{opened}");
    let room = foyer.room_id(&scheduled, Duration::from_secs(30)).await;
    assert_eq!(foyer.reservation(&scheduled).await.1["phase"], "open");
    let again = ask(&admin, &bot, &dm, &format!("!foyer open {scheduled}")).await;
    assert!(again["body"].as_str().unwrap().contains("` is already open; nothing to do."), "{again}");

    let retried = ask(&admin, &bot, &dm, &format!("!foyer retry {scheduled}")).await;
    assert!(retried["body"].as_str().unwrap().contains(&format!("Retrying `{scheduled}` now.")), "{retried}");

    // Archive now: the room is archived (read-only) and the phase says so, in that order.
    let archived = ask(&admin, &bot, &dm, &format!("!foyer archive {scheduled}")).await;
    assert!(archived["body"].as_str().unwrap().contains(&format!("Archiving the room of `{scheduled}` now.")));
    eventually(Duration::from_secs(30), "the read API to say archived", || async {
        (foyer.reservation(&scheduled).await.1["phase"] == "archived").then_some(())
    })
    .await;
    // `archived` is reported only once the archive step is recorded: the room is already
    // read-only when the API says so (contract §4).
    let levels = bot_user.state(&room, "m.room.power_levels").await.expect("the room's power levels");
    assert_eq!(levels["events_default"], 100, "read-only once the API says archived: {levels}");
    let bodies = admin.bodies(&dm).await;
    assert!(!bodies.iter().any(|b| b.contains(&foyer.slot.api_token)));

    let missing = ask(&admin, &bot, &dm, "!foyer show no-such-thing").await;
    assert!(missing["body"].as_str().unwrap().contains("There is no reservation `no-such-thing`."), "{missing}");
    let unknown = ask(&admin, &bot, &dm, "!foyer dance").await;
    assert!(unknown["body"].as_str().unwrap().contains("I don't know `dance`. Try `!foyer help`."), "{unknown}");

    // A stranger in the same room gets a polite refusal for every command but help (which
    // tells how to claim a ticket, the one thing anyone may do), and nothing moves.
    let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(&dm));
    assert_eq!(admin.request(reqwest::Method::POST, &path, Some(json!({"user_id": stranger.user_id}))).await.0, 200);
    assert_eq!(stranger.join(&dm).await.0, 200);
    let help = ask(&stranger, &bot, &dm, "!foyer help").await;
    let text = help["body"].as_str().unwrap();
    assert!(text.contains("send `!claim` followed by your claim code"), "{text}");
    assert!(!text.contains("!foyer open"), "no admin command is offered: {text}");
    for command in [
        "list",
        &format!("show {other}"),
        &format!("open {other}"),
        &format!("archive {other}"),
        &format!("retry {other}"),
    ] {
        let answer = ask(&stranger, &bot, &dm, &format!("!foyer {command}")).await;
        let text = answer["body"].as_str().unwrap();
        assert!(text.starts_with("Sorry, only Foyer's admins can use its commands."), "{command}: {text}");
        assert!(!text.contains(&other), "{command}: nothing about the reservation: {text}");
    }
    // Nothing moved, and nothing is on its way: a refused `open` or `archive` would show as
    // `"opening": true` or `"archiving": true` before any room changes (contract §4).
    let (_, untouched) = foyer.reservation(&other).await;
    assert_eq!((&untouched["phase"], &untouched["room_id"]), (&json!("scheduled"), &Value::Null), "{untouched}");
    assert!(untouched["opening"] != true && untouched["archiving"] != true, "{untouched}");

    // A stranger's own invite is left alone: the bot never joins their room.
    let member_events = r#"foyer_homeserver_events_total{type="m.room.member"}"#;
    let before = foyer.metric(member_events).await;
    let theirs = stranger.create_room(&[&bot]).await;
    eventually(Duration::from_secs(15), "the invite to reach Foyer", || async {
        (foyer.metric(member_events).await > before).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // time a join would take, had Foyer taken the invite
    let (_, joined) = bot_user.get("/_matrix/client/v3/joined_rooms").await;
    assert!(!joined["joined_rooms"].as_array().unwrap().contains(&json!(theirs)), "{joined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_foyer_archive_the_api_says_archived_only_once_members_can_no_longer_post() {
    let hs = Synapse::shared();
    let (admin, fan) = (hs.create_user("opsadmin").await, hs.create_user("fan").await);
    let admin_id = admin.user_id.clone();
    let foyer = TestFoyer::start_with(move |yaml| yaml + &format!("admins: [\"{admin_id}\"]\n"), &[]).await;
    let bot = foyer.slot.bot_user_id();
    let id = unique("archnow");
    // Opens at once (it starts in two hours, the chat opens three hours before).
    foyer.accept("reservation.created", reservation(&id, 7200, 3 * 3600)).await;
    foyer.grant(&id, &[("t-fan", &fan.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    fan.join_once_invited(&room, Duration::from_secs(20)).await;
    let dm = direct_chat(&foyer, &admin).await;

    // The watch starts before the command, so it sees every phase the API gives from then on.
    let command = format!("!foyer archive {id}");
    let (polls, answer) =
        tokio::join!(crate::lifecycle::watch_the_archive(&foyer, &id, &fan, &room), ask(&admin, &bot, &dm, &command));
    assert!(answer["body"].as_str().unwrap_or("").contains(&format!("Archiving the room of `{id}` now.")), "{answer}");
    eprintln!("[admin] the read API said archived after {polls} polls, with the room read-only");
}

/// A Chromium on Foyer's status page, logged in through its form with the API token;
/// reservation `id` was not shown before.
async fn status_in_chromium(foyer: &TestFoyer, id: &str) -> crate::browser::Browser {
    let browser = crate::browser::Browser::start().await;
    browser.goto(&format!("{}/status", foyer.base_url)).await;
    assert!(browser.find("input[name=token]").await.is_some(), "{}", browser.source().await);
    assert!(!browser.source().await.contains(id), "nothing listed before login");
    browser.type_into("input[name=token]", &foyer.slot.api_token).await;
    browser.click("button[type=submit]").await;
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_chromium_shows_a_reservation_open() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let holder = hs.create_user("viewer").await;
    let id = unique("onstage");
    // Scheduled two hours ahead until the page has shown it so; then an update opens it.
    foyer.accept("reservation.created", reservation(&id, 7200, 60)).await;
    foyer.grant(&id, &[("t-holder", &holder.user_id)]).await;

    let browser = status_in_chromium(&foyer, &id).await;
    let row = |phase: &str| format!("id=\"r-{id}\" data-phase=\"{phase}\"");
    eventually(Duration::from_secs(10), "the page after login, with the reservation scheduled", || async {
        browser.source().await.contains(&row("scheduled")).then_some(())
    })
    .await;
    assert!(browser.current_url().await.ends_with("/status"), "{}", browser.current_url().await);
    foyer.accept("reservation.updated", reservation(&id, 7200, 3 * 3600)).await;
    // No script drives this: the page reloads itself every few seconds.
    let page = eventually(Duration::from_secs(40), "the reservation to show as open, its holder invited", || async {
        let page = browser.source().await;
        (page.contains(&row("open")) && page.contains("0 joined, 1 invited")).then_some(page)
    })
    .await;
    assert!(page.contains("https://matrix.to/#/"), "a room link");
    let shot = crate::common::repo_root().join("target/test-artifacts/status-page.png");
    browser.screenshot(&shot).await;
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} bytes", png.len());
    eprintln!("[status] screenshot saved to {}", shot.display());

    // The page's own Log out button works (the browser marks its POST same-origin) and
    // leaves the login form.
    browser.click("form[action='/status/logout'] button").await;
    eventually(Duration::from_secs(10), "the login form after logging out", || async {
        let page = browser.source().await;
        (page.contains("name=\"token\"") && !page.contains(&id)).then_some(())
    })
    .await;
}

/// An open room shows its holders in over its holders, counted by Matrix ID: Bob's two
/// tickets make one holder, the host who joins is no holder, Cat is only invited.
/// Everyone joins as themselves, through the client-server API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_chromium_shows_how_many_holders_are_in_an_open_room() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (ann, bob, cat, host) = (
        hs.create_user("ann").await,
        hs.create_user("bob").await,
        hs.create_user("cat").await,
        hs.create_user("host").await,
    );
    let id = unique("doors");
    let mut show = reservation(&id, 7200, 3 * 3600);
    show["hosts"] = json!([host.user_id]);
    foyer.accept("reservation.created", show).await;
    let tickets =
        [("t-ann", &ann.user_id), ("t-bob-1", &bob.user_id), ("t-bob-2", &bob.user_id), ("t-cat", &cat.user_id)];
    foyer.grant(&id, &tickets.map(|(t, u)| (t, u.as_str()))).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    for member in [&ann, &bob, &host] {
        member.join_once_invited(&room, Duration::from_secs(30)).await;
    }

    let browser = status_in_chromium(&foyer, &id).await;
    eventually(Duration::from_secs(40), "the open room with 2 of its 3 holders in", || async {
        let page = browser.source().await;
        (page.contains(&format!("id=\"r-{id}\" data-phase=\"open\""))
            && page.contains("2/3</b> holders in")
            && page.contains("3 joined, 1 invited"))
        .then_some(())
    })
    .await;
    // The read API gives the same figures, against the tickets.
    let (_, view) = foyer.reservation(&id).await;
    let figures = (&view["members"]["holders_joined"], &view["tickets"]["holders"], &view["tickets"]["active"]);
    assert_eq!(figures, (&json!(2), &json!(3), &json!(4)), "{view}");
}
