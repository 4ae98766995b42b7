"""One face for the trio and asyncio adapters, so a scenario is written once.

A scenario is ``async def scenario(ad: Adapter) -> None``; ``ad.run(scenario, ad)`` runs it
on the adapter's event loop (``trio.run``, ``asyncio.run``, or asyncio on uvloop).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

import dtls13.asyncio as dtls_asyncio
import dtls13.trio as dtls_trio
from dtls13 import ClientConfig, ServerConfig


class Adapter:
    """What differs between the adapters; everything else is the same API."""

    name: str
    EndOfChannel: type[BaseException]  # receive() after the peer's close_notify
    Closed: type[BaseException]  # use after our own close
    Broken: type[BaseException]  # the loop's "connection is broken" base class
    NeedHandshake: type[BaseException]

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    async def within(self, seconds: float, aw: Awaitable[Any]) -> Any:
        """`aw`'s result, or TimeoutError after `seconds` (aw cancelled)."""
        raise NotImplementedError

    async def cancelled_after(self, seconds: float, aw: Awaitable[Any]) -> bool:
        """Run `aw`, cancelling it after `seconds`; True if it was cancelled."""
        try:
            await self.within(seconds, aw)
        except TimeoutError:
            return True
        return False

    def endpoint(self, **kwargs: Any) -> Any:
        """A new endpoint on 127.0.0.1, port chosen by the system (inside the loop)."""
        raise NotImplementedError

    async def open_client(self, port: int, config: ClientConfig, **kwargs: Any) -> Any:
        raise NotImplementedError

    def serving(
        self, config: ServerConfig, handler: Callable[..., Awaitable[Any]], **kwargs: Any
    ) -> contextlib.AbstractAsyncContextManager[tuple[Any, tuple[str, int]]]:
        """An endpoint serving `handler` on 127.0.0.1 until the block ends."""
        raise NotImplementedError

    async def gather(self, *fns: Callable[[], Awaitable[Any]]) -> None:
        """Run every fn concurrently; return once all are done."""
        raise NotImplementedError

    def background(
        self, fn: Callable[[], Awaitable[Any]]
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Run fn while the block runs; cancel it when the block ends."""
        raise NotImplementedError

    def queued(self, endpoint: Any) -> int:
        """Datagrams (or bytes) the endpoint still has to send."""
        raise NotImplementedError

    async def wait_for(self, cond: Callable[[], bool], timeout: float = 5.0) -> None:
        async def poll() -> None:
            while not cond():
                await self.sleep(0.002)

        await self.within(timeout, poll())

    def __repr__(self) -> str:
        return self.name


class TrioAdapter(Adapter):
    name = "trio"
    EndOfChannel = trio.EndOfChannel
    Closed = trio.ClosedResourceError
    Broken = trio.BrokenResourceError
    NeedHandshake = trio.NeedHandshakeError

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return trio.run(fn, *args)

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def within(self, seconds: float, aw: Awaitable[Any]) -> Any:
        try:
            with trio.fail_after(seconds):
                return await aw
        except trio.TooSlowError:
            raise TimeoutError from None

    def endpoint(self, **kwargs: Any) -> Any:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        return dtls_trio.DTLSEndpoint(trio.socket.from_stdlib_socket(sock), **kwargs)

    async def open_client(self, port: int, config: ClientConfig, **kwargs: Any) -> Any:
        return await dtls_trio.open_dtls_client("127.0.0.1", port, config, **kwargs)

    @contextlib.asynccontextmanager
    async def serving(
        self, config: ServerConfig, handler: Callable[..., Awaitable[Any]], **kwargs: Any
    ) -> AsyncIterator[tuple[Any, tuple[str, int]]]:
        endpoint = self.endpoint(**kwargs)
        async with endpoint, trio.open_nursery() as nursery:
            await nursery.start(endpoint.serve, config, handler)
            yield endpoint, endpoint.socket.getsockname()[:2]
            nursery.cancel_scope.cancel()

    async def gather(self, *fns: Callable[[], Awaitable[Any]]) -> None:
        async with trio.open_nursery() as nursery:
            for fn in fns:
                nursery.start_soon(fn)

    @contextlib.asynccontextmanager
    async def background(self, fn: Callable[[], Awaitable[Any]]) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fn)
            yield
            nursery.cancel_scope.cancel()

    def queued(self, endpoint: Any) -> int:
        return int(endpoint.statistics().queued_datagrams)


class AsyncioAdapter(Adapter):
    name = "asyncio"
    EndOfChannel = dtls_asyncio.errors.ASYNCIO_CLASSES[dtls_asyncio.errors.errors.PeerClosed]
    Closed = dtls_asyncio.ClosedResourceError
    Broken = ConnectionError
    NeedHandshake = dtls_asyncio.NeedHandshakeError

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return asyncio.run(fn(*args))  # type: ignore[arg-type]

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def within(self, seconds: float, aw: Awaitable[Any]) -> Any:
        async with asyncio.timeout(seconds):
            return await aw

    def endpoint(self, **kwargs: Any) -> Any:
        return dtls_asyncio.DTLSEndpoint(("127.0.0.1", 0), **kwargs)

    async def open_client(self, port: int, config: ClientConfig, **kwargs: Any) -> Any:
        return await dtls_asyncio.open_dtls_client("127.0.0.1", port, config, **kwargs)

    @contextlib.asynccontextmanager
    async def serving(
        self, config: ServerConfig, handler: Callable[..., Awaitable[Any]], **kwargs: Any
    ) -> AsyncIterator[tuple[Any, tuple[str, int]]]:
        async with self.endpoint(**kwargs) as endpoint:
            started = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(endpoint.serve(config, handler, started=started))
            await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
            try:
                yield endpoint, endpoint.socket.getsockname()[:2]
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def gather(self, *fns: Callable[[], Awaitable[Any]]) -> None:
        async with asyncio.TaskGroup() as tg:
            for fn in fns:
                tg.create_task(fn())  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def background(self, fn: Callable[[], Awaitable[Any]]) -> AsyncIterator[None]:
        task = asyncio.create_task(fn())  # type: ignore[arg-type]
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def queued(self, endpoint: Any) -> int:
        return int(endpoint.statistics().queued_bytes)


class UvloopAdapter(AsyncioAdapter):
    name = "uvloop"

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        import uvloop  # a test dependency wherever it has wheels (not on Windows)

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(fn(*args))  # type: ignore[arg-type]


ADAPTERS: list[Adapter] = [TrioAdapter(), AsyncioAdapter()]
if sys.platform != "win32":
    ADAPTERS.append(UvloopAdapter())


def udp_bot(host: str) -> socket.socket:
    """A plain, non-blocking UDP socket bound to `host` (a loopback address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock
