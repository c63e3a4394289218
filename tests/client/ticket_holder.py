"""A ticket holder acting through matrix-nio, a real Matrix client library.

    ticket_holder.py HOMESERVER USER_ID PASSWORD ROOM_ID join|post

`join`: waits for the invite, accepts it, reads the room (notices, widget) and posts.
`post`: tries to post once more (after the archive this must be refused).
Prints one JSON object with what it saw; exits 1 on anything unexpected.
"""
import asyncio
import json
import sys

from nio import AsyncClient, JoinError, LoginError, RoomGetStateError, RoomSendError


async def main() -> int:
    homeserver, user_id, password, room_id, mode = sys.argv[1:6]
    client = AsyncClient(homeserver, user_id)
    try:
        login = await client.login(password)
        if isinstance(login, LoginError):
            print(json.dumps({"error": f"login: {login.message}"}))
            return 1
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


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
