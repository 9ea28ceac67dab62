import asyncio


async def test_async_tests_run_on_uvloop() -> None:
    # The proxy runs on uvloop; its transports differ from asyncio's (not subclasses).
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
