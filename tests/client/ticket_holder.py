"""A ticket holder acting through matrix-nio, a real Matrix client library.

    ticket_holder.py HOMESERVER USER_ID PASSWORD ROOM_ID join|post
    ticket_holder.py HOMESERVER USER_ID PASSWORD BOT_ID claim TEXT...
    ticket_holder.py HOMESERVER USER_ID PASSWORD ROOM_ID converse
    ticket_holder.py HOMESERVER USER_ID PASSWORD ROOM_ID say TEXT

`join`: waits for the invite, accepts it, reads the room (notices, widget) and posts.
`post`: tries to post once more (after the archive this must be refused).
`converse` (in a room already joined): takes the display name "Early Name", posts a
draft and edits it, posts HTML with a script, posts a message and redacts it, then
takes the name "Later Name" and posts once more; prints the event ids.
`say` (in a room already joined): posts TEXT; prints its event id and the homeserver's
time for it (`origin_server_ts`), which places it on a recording's clock.
`claim`: opens a direct chat with the bot, as Element does (an invite marked is_direct),
waits for the bot to join, then sends each TEXT in turn and waits for each answer.
Prints one JSON object with what it saw; exits 1 on anything unexpected.
"""
import asyncio
import json
import sys

from nio import (
    AsyncClient,
    JoinError,
    LoginError,
    RoomCreateResponse,
    RoomGetEventError,
    RoomGetStateError,
    RoomRedactError,
    RoomSendError,
)


async def main() -> int:
    homeserver, user_id, password, room_id, mode = sys.argv[1:6]
    client = AsyncClient(homeserver, user_id)
    try:
        login = await client.login(password)
        if isinstance(login, LoginError):
            print(json.dumps({"error": f"login: {login.message}"}))
            return 1
        if mode == "claim":
            return await claim(client, room_id, sys.argv[6:])
        if mode == "converse":
            return await converse(client, room_id)
        if mode == "say":
            return await say(client, room_id, sys.argv[6])
        if mode == "post":
            sent = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "after the end"})
            refused = isinstance(sent, RoomSendError)
            print(json.dumps({"refused": refused, "errcode": getattr(sent, "status_code", None)}))
            return 0

        for _ in range(60):
            await client.sync(timeout=500)
            if room_id in client.invited_rooms:
                break
        else:
            print(json.dumps({"error": "no invite"}))
            return 1
        joined = await client.join(room_id)
        if isinstance(joined, JoinError):
            print(json.dumps({"error": f"join: {joined.message}"}))
            return 1
        notices = []
        for _ in range(20):
            sync = await client.sync(timeout=500, full_state=True)
            room = sync.rooms.join.get(room_id)
            for event in room.timeline.events if room else []:
                source = event.source.get("content", {})
                if source.get("msgtype") == "m.notice":
                    notices.append(source.get("body"))
            if notices:
                break
        state = await client.room_get_state(room_id)
        if isinstance(state, RoomGetStateError):
            print(json.dumps({"error": f"state: {state.message}"}))
            return 1
        widgets = [e for e in state.events if e.get("type") == "im.vector.modular.widgets" and e.get("content")]
        name = client.rooms[room_id].display_name if room_id in client.rooms else None
        sent = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"})
        print(json.dumps({
            "room_name": name,
            "notices": notices,
            "widget_url": widgets[0]["content"].get("url") if widgets else None,
            "posted": not isinstance(sent, RoomSendError),
        }))
        return 0
    finally:
        await client.close()


async def say(client: AsyncClient, room_id: str, text: str) -> int:
    sent = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
    if isinstance(sent, RoomSendError):
        print(json.dumps({"error": f"send: {sent.message}"}))
        return 1
    got = await client.room_get_event(room_id, sent.event_id)
    if isinstance(got, RoomGetEventError):
        print(json.dumps({"error": f"event: {got.message}"}))
        return 1
    print(json.dumps({"event_id": sent.event_id, "origin_server_ts": got.event.server_timestamp}))
    return 0


async def converse(client: AsyncClient, room_id: str) -> int:
    sent = {}

    async def send(key: str, content: dict) -> bool:
        answer = await client.room_send(room_id, "m.room.message", content)
        if isinstance(answer, RoomSendError):
            print(json.dumps({"error": f"send {key}: {answer.message}"}))
            return False
        sent[key] = answer.event_id
        return True

    async def rename(name: str) -> bool:
        # Synapse tells the room of a new name in the background: the next message is
        # sent once the room shows it, so that it comes after the rename.
        await client.set_displayname(name)
        for _ in range(60):
            await client.sync(timeout=500)
            me = client.rooms[room_id].users.get(client.user_id) if room_id in client.rooms else None
            if me is not None and me.display_name == name:
                return True
        print(json.dumps({"error": f"the room never showed the name {name!r}"}))
        return False

    if not await rename("Early Name"):
        return 1
    html = "<b>bold</b> <script>alert(1)</script>"
    steps = [
        ("draft", {"msgtype": "m.text", "body": "first draft"}),
        ("edit", {"msgtype": "m.text", "body": "* final words",
                  "m.new_content": {"msgtype": "m.text", "body": "final words"},
                  "m.relates_to": {"rel_type": "m.replace", "event_id": None}}),
        ("html", {"msgtype": "m.text", "body": html, "format": "org.matrix.custom.html", "formatted_body": html}),
        ("secret", {"msgtype": "m.text", "body": "oops, a secret"}),
    ]
    for key, content in steps:
        if key == "edit":
            content["m.relates_to"]["event_id"] = sent["draft"]
        if not await send(key, content):
            return 1
    redacted = await client.room_redact(room_id, sent["secret"], reason="posted by mistake")
    if isinstance(redacted, RoomRedactError):
        print(json.dumps({"error": f"redact: {redacted.message}"}))
        return 1
    if not await rename("Later Name"):
        return 1
    if not await send("renamed", {"msgtype": "m.emote", "body": "waves"}):
        return 1
    print(json.dumps(sent))
    return 0


async def claim(client: AsyncClient, bot: str, texts: list) -> int:
    created = await client.room_create(is_direct=True, invite=[bot])
    if not isinstance(created, RoomCreateResponse):
        print(json.dumps({"error": f"createRoom: {created}"}))
        return 1
    dm = created.room_id
    answers = []
    seen = set()

    async def next_answer() -> str | None:
        # Bounded by time, not by syncs: a sync returns early whenever anything happens,
        # and on a busy machine the answer may take a while.
        deadline = asyncio.get_running_loop().time() + 120
        while asyncio.get_running_loop().time() < deadline:
            sync = await client.sync(timeout=500)
            room = sync.rooms.join.get(dm)
            for event in room.timeline.events if room else []:
                source = event.source
                if source.get("sender") == bot and source.get("content", {}).get("msgtype") == "m.notice":
                    if source["event_id"] not in seen:
                        seen.add(source["event_id"])
                        return source["content"].get("body")
        return None

    for _ in range(60):
        await client.sync(timeout=500)
        members = client.rooms[dm].users if dm in client.rooms else {}
        if bot in members:
            break
    else:
        print(json.dumps({"error": "the bot never joined the direct chat", "dm": dm}))
        return 1
    for text in texts:
        sent = await client.room_send(dm, "m.room.message", {"msgtype": "m.text", "body": text})
        if isinstance(sent, RoomSendError):
            print(json.dumps({"error": f"send: {sent.message}", "dm": dm}))
            return 1
        answer = await next_answer()
        if answer is None:
            print(json.dumps({"error": f"no answer to {text!r}", "dm": dm, "answers": answers}))
            return 1
        answers.append(answer)
    print(json.dumps({"dm": dm, "answers": answers}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
