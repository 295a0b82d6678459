"""GET requests to one API host through libcurl (pycurl): one at a time, or many at once.

``get(path)`` makes one request in the calling thread, on a keep-alive connection from
the client's pool (at most ``max_concurrent`` kept, shared by all threads).
``run(jobs)`` drives many requests at once, also in the calling thread, through
libcurl's multi interface: up to ``max_concurrent`` in flight on keep-alive connections
and no thread per request, so a batch's thousands of calls cost no thread
switches (eight threads calling urllib3 spent about 350 us of CPU a call here, most of
it handing the GIL around; the multi interface about 110 us, answers parsed included).

A job (``Job``) is the logic of one looked-up value without I/O: it names its next
request and takes each answer, saying how long to wait before asking again (a retry).
Pacing (``requests_per_second``) spaces the start of every request of this client,
from every thread. Failures are named by kind only (``ConnectError``,
``ConnectTimeout``, ``ReadTimeout`` ...): libcurl's own messages quote the host.
TLS is verified against the CA file Python's ``ssl`` uses (``SSL_CERT_FILE`` too);
proxies from the environment and redirects are not followed.
"""

from __future__ import annotations

import heapq
import io
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import pycurl

_FAILURES = {
    pycurl.E_COULDNT_CONNECT: "ConnectError",
    pycurl.E_COULDNT_RESOLVE_HOST: "ConnectError",
    pycurl.E_GOT_NOTHING: "RemoteProtocolError",
    pycurl.E_RECV_ERROR: "ReadError",
    pycurl.E_SEND_ERROR: "WriteError",
    pycurl.E_SSL_CONNECT_ERROR: "TLSError",
    pycurl.E_PEER_FAILED_VERIFICATION: "TLSError",
    pycurl.E_SSL_CACERT_BADFILE: "TLSError",
    pycurl.E_SSL_CERTPROBLEM: "TLSError",
}
_SELECT_S = 1.0  # longest wait for sockets between two looks at timers
_NOWHERE = io.BytesIO()  # what an idle handle would write to (nothing comes)


def _ignore(_line: bytes) -> None:
    """An idle handle's header callback."""


@dataclass(frozen=True)
class Answer:
    """What a request came back with: an HTTP answer, or a failure before one."""

    status: int  # 0 when ``failure`` is set
    body: bytes
    retry_after: str | None = None
    failure: str | None = None  # the kind of transport failure, no URL in it


class Job(Protocol):
    def next_request(self) -> str | None:
        """The path and query to GET next (the same until an answer is taken), or None
        when the job is done."""
        ...

    def answer(self, answer: Answer) -> float | None:
        """Take the answer to the last request; seconds to wait before asking again (a
        retry), or None to go on. Raising ends the job (``run`` reports the error; the
        others go on)."""
        ...


class CurlClient:
    """Requests to ``base_url`` (scheme, host, port and path prefix) with fixed headers."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout_s: float,
        max_concurrent: int,
        requests_per_second: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_concurrent = max(1, max_concurrent)
        self._header_lines = [f"{k}: {v}" for k, v in headers.items()]
        self._timeout_ms = max(1, int(timeout_s * 1000))
        self._interval = 1 / requests_per_second if requests_per_second else 0.0
        self._next_slot = 0.0  # monotonic time the next request may start
        self._slot_lock = threading.Lock()
        self._sleep = sleep
        self._multi_lock = threading.Lock()  # one thread drives the multi at a time
        self._multi: pycurl.CurlMulti | None = None
        self._pool_lock = threading.Lock()
        self._idle: list[pycurl.Curl] = []  # handles not in use, at most max_concurrent
        verify = ssl.get_default_verify_paths()
        self._ca = (verify.cafile, verify.capath)

    def close(self) -> None:
        with self._multi_lock, self._pool_lock:
            for handle in self._idle:
                handle.close()
            self._idle.clear()
            if self._multi is not None:
                self._multi.close()
                self._multi = None

    # -- one request ---------------------------------------------------------------------

    def get(self, path: str) -> Answer:
        """GET ``path`` now (after its pacing slot), in this thread, on a handle (and
        its keep-alive connection) from the pool."""
        start = self._reserve_slot()
        wait = start - time.monotonic()
        if wait > 0:
            self._sleep(wait)
        handle = self._borrow()
        try:
            body, headers = self._prepare(handle, path)
            try:
                handle.perform()
            except pycurl.error as exc:
                return Answer(0, b"", failure=self._failure(handle, exc.args[0]))
            return self._answer(handle, body, headers)
        finally:
            self._give_back(handle)

    # -- many requests -------------------------------------------------------------------

    def run(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        """Drive every job to its end, up to ``max_concurrent`` requests in flight; what
        stopped each job (None when it ended well), in job order."""
        with self._multi_lock:
            if self._multi is None:
                self._multi = pycurl.CurlMulti()
                self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, self.max_concurrent)
            return _Run(self, self._multi, jobs).until_done()

    def _borrow(self) -> pycurl.Curl:
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
        return self._new_handle()

    def _give_back(self, handle: pycurl.Curl) -> None:
        """Keep the handle for the next request, or close it (and its connection) when
        ``max_concurrent`` are kept already: threads come and go, connections do not."""
        with self._pool_lock:
            if len(self._idle) < self.max_concurrent:
                handle.setopt(pycurl.WRITEDATA, _NOWHERE)  # the last answer's buffers go
                handle.setopt(pycurl.HEADERFUNCTION, _ignore)
                self._idle.append(handle)
                return
        handle.close()

    # -- shared ----------------------------------------------------------------------------

    def _new_handle(self) -> pycurl.Curl:
        h = pycurl.Curl()
        h.setopt(pycurl.HTTPHEADER, self._header_lines)
        h.setopt(pycurl.CONNECTTIMEOUT_MS, self._timeout_ms)
        h.setopt(pycurl.TIMEOUT_MS, self._timeout_ms)
        h.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: threads are safe
        h.setopt(pycurl.FOLLOWLOCATION, 0)
        h.setopt(pycurl.PROXY, "")  # no proxy from the environment
        h.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        cafile, capath = self._ca
        if cafile:
            h.setopt(pycurl.CAINFO, cafile)
        if capath:
            h.setopt(pycurl.CAPATH, capath)
        return h

    def _prepare(self, handle: pycurl.Curl, path: str) -> tuple[io.BytesIO, list[bytes]]:
        body, headers = io.BytesIO(), []
        handle.setopt(pycurl.URL, self.base_url + path)
        handle.setopt(pycurl.WRITEDATA, body)
        handle.setopt(pycurl.HEADERFUNCTION, headers.append)
        return body, headers

    @staticmethod
    def _answer(handle: pycurl.Curl, body: io.BytesIO, headers: list[bytes]) -> Answer:
        status = int(handle.getinfo(pycurl.RESPONSE_CODE))
        retry_after = None
        if status == 429 or status >= 500:
            for line in headers:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"retry-after":
                    retry_after = value.strip().decode("latin-1")
        return Answer(status, body.getvalue(), retry_after)

    @staticmethod
    def _failure(handle: pycurl.Curl, code: int) -> str:
        if code == pycurl.E_OPERATION_TIMEDOUT:
            connected = handle.getinfo(pycurl.CONNECT_TIME) > 0
            return "ReadTimeout" if connected else "ConnectTimeout"
        return _FAILURES.get(code, f"TransportError {code}")

    def _reserve_slot(self) -> float:
        """The monotonic time the next request may start, under ``requests_per_second``
        (now without a rate); reserving it for the caller."""
        now = time.monotonic()
        if not self._interval:
            return now
        with self._slot_lock:
            start = max(now, self._next_slot)
            self._next_slot = start + self._interval
        return start


class _Run:
    """One ``CurlClient.run``: the jobs' requests through the multi handle."""

    def __init__(self, client: CurlClient, multi: pycurl.CurlMulti, jobs: Sequence[Job]) -> None:
        self.client, self.multi, self.jobs = client, multi, jobs
        self.errors: list[BaseException | None] = [None] * len(jobs)
        self.timers: list[tuple[float, int, bool]] = []  # (when, job, its slot reserved)
        self.ready = list(range(len(jobs) - 1, -1, -1))  # jobs to go on now, next last
        self.flight: dict[int, tuple[int, pycurl.Curl, io.BytesIO, list[bytes]]] = {}

    def until_done(self) -> list[BaseException | None]:
        try:
            while self.ready or self.timers or self.flight:
                self._start()
                self._perform()
                self._collect()
                self._wait()
        finally:
            for _job, handle, _body, _headers in self.flight.values():
                self.multi.remove_handle(handle)
                self.client._give_back(handle)
        return self.errors

    def _room(self) -> bool:
        return len(self.flight) < self.client.max_concurrent

    def _start(self) -> None:
        now = time.monotonic()
        while self._room() and self.timers and self.timers[0][0] <= now:
            _, job, reserved = heapq.heappop(self.timers)
            self._begin(job, reserved, now)
        while self._room() and self.ready:
            self._begin(self.ready.pop(), False, now)

    def _begin(self, job: int, reserved: bool, now: float) -> None:
        """Start the job's next request, or wait for its pacing slot; a job with no next
        request is done."""
        try:
            path = self.jobs[job].next_request()
        except Exception as exc:  # the job's own logic: its error, not the run's
            self.errors[job] = exc
            return
        if path is None:
            return
        if not reserved:
            start = self.client._reserve_slot()
            if start > now:
                heapq.heappush(self.timers, (start, job, True))
                return
        handle = self.client._borrow()
        body, headers = self.client._prepare(handle, path)
        self.multi.add_handle(handle)
        self.flight[id(handle)] = (job, handle, body, headers)

    def _perform(self) -> None:
        while self.multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass

    def _collect(self) -> None:
        while True:
            queued, done, failed = self.multi.info_read()
            for handle in done:
                self._finish(handle, None)
            for handle, code, _message in failed:  # the message quotes the host: unused
                self._finish(handle, code)
            if not queued:
                return

    def _finish(self, handle: pycurl.Curl, code: int | None) -> None:
        job, _, body, headers = self.flight.pop(id(handle))
        self.multi.remove_handle(handle)
        if code is None:
            answer = self.client._answer(handle, body, headers)
        else:
            answer = Answer(0, b"", failure=self.client._failure(handle, code))
        self.client._give_back(handle)
        try:
            wait = self.jobs[job].answer(answer)
        except Exception as exc:  # the job ends with its error; the others go on
            self.errors[job] = exc
            return
        if wait is not None and wait > 0:
            heapq.heappush(self.timers, (time.monotonic() + wait, job, False))
        else:
            self.ready.append(job)  # its next page before other jobs' first

    def _wait(self) -> None:
        """Until a socket is ready, libcurl has work to do or the next timer is due."""
        if self.ready and self._room():
            return
        until = _SELECT_S
        if self.timers and self._room():
            until = min(until, self.timers[0][0] - time.monotonic())
        if self.flight:
            asked = self.multi.timeout()  # libcurl's own deadline (ms), -1 for none
            if asked >= 0:
                until = min(until, asked / 1000)
            if until > 0:
                self.multi.select(until)
        elif self.timers and until > 0:  # only retries and paced requests are left
            time.sleep(until)
