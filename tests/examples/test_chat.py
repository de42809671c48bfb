"""examples/chat: rooms on fastws channels, seen from three Chromium pages (separate browser
contexts, i.e. three visitors) talking to a server with two workers."""

from __future__ import annotations

from typing import Any

EVENTS = "() => window.chat.events.map((e) => [e.kind, e.room, e.name, e.text])"


def open_chat(new_page: Any, url: str, name: str, room: str) -> Any:
    page = new_page()
    page.goto(url.replace("?room=lobby", f"?room={room}&name={name}"))
    page.wait_for_function(
        f"() => window.chat.events.some((e) => e.kind === 'joined' && e.name === '{name}')"
    )
    return page


def say(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.click("#say button")


def wait_for_text(page: Any, text: str) -> None:
    page.wait_for_function(f"() => window.chat.events.some((e) => e.text === {text!r})")


def texts(page: Any) -> list[str]:
    return [text for kind, _, _, text in page.evaluate(EVENTS) if kind == "message"]


def test_rooms_keep_their_messages(demo: Any, new_page: Any) -> None:
    """Two pages in one room see each other's messages; a page in another room sees none of
    them, and they none of its; joining the room brings its messages, leaving is announced."""
    chat = demo("chat")
    alice = open_chat(new_page, chat.url, "alice", "red")
    bob = open_chat(new_page, chat.url, "bob", "red")
    carol = open_chat(new_page, chat.url, "carol", "blue")
    alice.wait_for_function("() => window.chat.events.some((e) => e.name === 'bob')")

    say(alice, "hello from alice")
    say(carol, "only blue hears this")
    wait_for_text(bob, "hello from alice")
    wait_for_text(alice, "hello from alice")  # back from the channel, like everyone's
    wait_for_text(carol, "only blue hears this")
    say(bob, "hi alice")
    wait_for_text(alice, "hi alice")

    assert texts(alice) == ["hello from alice", "hi alice"]
    assert texts(bob) == ["hello from alice", "hi alice"]
    assert texts(carol) == ["only blue hears this"]
    assert "bob" in alice.text_content("#log")

    carol.fill("#room", "red")
    carol.click("#join button")
    alice.wait_for_function(
        "() => window.chat.events.some((e) => e.kind === 'joined' && e.name === 'carol'"
        " && e.room === 'red')"
    )
    say(carol, "carol in red now")
    wait_for_text(alice, "carol in red now")
    wait_for_text(bob, "carol in red now")

    bob.context.close()  # bob goes without a word: the server announces it
    alice.wait_for_function(
        "() => window.chat.events.some((e) => e.kind === 'left' && e.name === 'bob')"
    )
    assert texts(alice) == ["hello from alice", "hi alice", "carol in red now"]
