"""The review page in headless Chromium (Playwright): log in, rate with the keyboard, reload
and keep the progress, curate expected answers, and show a model answer that contains
markup as text without running it."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from shadoweval.config.review import ReviewConfig
from shadoweval.review.app import create_app
from shadoweval.review.command import import_inputs
from shadoweval.review.store import Store
from tests.integration.test_review_api import (
    TOKEN,
    XSS,
    MemorySink,
    dataset_lines,
    make_pairs,
    write_jsonl,
)

CHROMIUM_HINT = "headless Chromium is not installed (apt-get install -y chromium)"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser test must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        _missing(CHROMIUM_HINT)
    assert binary is not None
    return binary


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Store]]:
    cfg = ReviewConfig(db_path=str(tmp_path / "review.sqlite"))
    store = Store(cfg.db_path)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(3))
    data = write_jsonl(tmp_path / "dataset.jsonl", dataset_lines()[:2])
    import_inputs(store, cfg, [pairs], [data])
    server = TestServer(create_app(cfg, store, MemorySink(), TOKEN))
    await server.start_server()
    try:
        yield str(server.make_url("/")), store
    finally:
        await server.close()
        store.close()


async def test_review_page_with_the_keyboard(
    chromium: str, served: tuple[str, Store], tmp_path: Path
) -> None:
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
        raise
    url, store = served
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile per run
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        page = context.pages[0] if context.pages else await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            await page.goto(url)
            await expect(page.locator("#login")).to_be_visible()
            await page.fill("#login-name", "rita")
            await page.fill("#login-token", "not the token")
            await page.press("#login-token", "Enter")
            await expect(page.locator("#login-status")).to_have_text("wrong token")
            await page.fill("#login-token", TOKEN)
            await page.press("#login-token", "Enter")
            await expect(page.locator("#compare")).to_be_visible()
            progress = page.locator("#c-progress")
            await expect(progress).to_contain_text("You rated 0 of 3")

            async def current() -> Any:
                return await page.evaluate("() => S.item && S.item.id")

            async def moved_from(item_id: str) -> None:
                await page.wait_for_function("id => !S.item || S.item.id !== id", arg=item_id)

            markup_seen = []

            async def check_markup_is_text() -> None:
                # Whichever side shows the answer with markup: text, not elements; not run.
                for side in ("left", "right"):
                    box = page.locator(f"#{side}-text")
                    if "<script>" in (await box.text_content() or ""):
                        markup_seen.append(side)
                        assert await box.text_content() == XSS
                        assert (
                            await page.locator(f"#{side}-text script, #{side}-text img").count()
                            == 0
                        )
                assert await page.evaluate("() => window.__pwned") is None

            rated = []
            first = await current()
            await check_markup_is_text()
            await page.keyboard.press("1")  # left is better
            await expect(progress).to_contain_text("You rated 1 of 3")
            await moved_from(first)
            rated.append(first)

            second = await current()
            assert second != first
            await check_markup_is_text()
            await page.keyboard.press("r")  # rubric: six scores in order, then the preference
            for key in "543111":
                await page.keyboard.press(key)
            await expect(page.locator("#c-status")).to_contain_text("Rubric done")
            await page.keyboard.press("3")
            await expect(progress).to_contain_text("You rated 2 of 3")
            await moved_from(second)
            rated.append(second)

            await page.reload()  # the progress lives on the server
            await expect(progress).to_contain_text("You rated 2 of 3")
            third = await current()
            assert third not in rated
            await check_markup_is_text()
            await page.keyboard.press("f")  # flag the left answer as unsafe
            await expect(page.locator("#left-flag")).to_be_visible()
            await page.keyboard.press("2")  # tie
            await expect(page.locator("#c-done")).to_be_visible()
            await expect(progress).to_contain_text("You rated 3 of 3")
            rated.append(third)

            # Going back shows the stored rating.
            await page.keyboard.press("p")
            await expect(page.locator("#c-status")).to_contain_text("rated this item already")
            await check_markup_is_text()

            assert markup_seen  # the answer with markup was among the three items
            ratings = {r.item_id: r for r in store.all_ratings()}
            assert set(ratings) == set(rated)
            assert all(r.reviewer == "rita" for r in ratings.values())
            assert ratings[second].rubric is not None and ratings[second].choice in ("a", "b")
            assert ratings[third].choice == "tie" and ratings[third].flags == [ratings[third].left]

            # Expected answers: approve the suggestion, then write one.
            await page.keyboard.press("m")
            await expect(page.locator("#expected")).to_be_visible()
            await expect(page.locator("#e-suggestion")).to_have_text("suggested 0")
            await page.keyboard.press("1")  # scoring rule: exact
            await page.keyboard.press("a")
            await expect(page.locator("#e-progress")).to_contain_text("1 of 2 dataset items")
            await page.keyboard.press("e")
            await page.fill("#expected-text", "A better answer")
            await page.keyboard.press("Control+Enter")
            await expect(page.locator("#e-done")).to_be_visible()
            exported = {line["id"]: line for line in store.export_dataset()}
            assert exported["in-0"]["expected"] == "suggested 0"
            assert exported["in-0"]["scoring"] == "exact"
            assert exported["in-1"]["expected"] == "A better answer"
            assert errors == []
        finally:
            await context.close()
