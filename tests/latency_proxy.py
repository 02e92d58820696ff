"""A TCP proxy that makes a server answer late: every chunk a client sends reaches the
server `delay_s` after it arrived, the replies come straight back. Each request then
takes at least `delay_s` longer, as over a slow network or from a distant S3 region,
while many requests in flight overlap as they would there (a delay line, not a queue).

Used by benchmarks and tests that need a store "answering in 200 ms" in front of the
real S3 server (tests/s3_server.py): `with LatencyProxy(port, 0.2) as proxy: proxy.url`.
"""

import asyncio
import threading


class LatencyProxy:
    def __init__(self, target_port: int, delay_s: float, target_host: str = "127.0.0.1"):
        self.target, self.delay_s = (target_host, target_port), delay_s
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="latency-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LatencyProxy":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the latency proxy did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            pending = asyncio.all_tasks(self._loop)  # connections still open: ended, not left pending
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    async def _connection(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._delayed(client_reader, server_writer),
                             _copy(server_reader, client_writer), return_exceptions=True)
        for writer in (client_writer, server_writer):
            writer.close()

    async def _delayed(self, reader, writer) -> None:
        """Each chunk written `delay_s` after it was read; chunks keep their order."""
        chunks: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            while data := await reader.read(1 << 16):
                chunks.put_nowait((loop.time() + self.delay_s, data))
            chunks.put_nowait((loop.time() + self.delay_s, b""))

        reading = asyncio.ensure_future(read())
        try:
            while True:
                due, data = await chunks.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        finally:
            reading.cancel()


async def _copy(reader, writer) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
