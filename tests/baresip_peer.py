"""Debian's baresip as an AI vendor that answers every call and echoes its audio back.

baresip is an SRTP implementation independent of rtpengine (libre's SDES
and its ``dtls_srtp`` module over OpenSSL), so a call that carries audio
through rtpengine to baresip and back proves the encryption toward the vendor
really interoperates. The peer listens for SIP over UDP on loopback; its
``echo`` module answers each call and loops the decoded audio back through
``aubridge``.

``mediaenc`` is baresip's account parameter for media encryption:

- ``None``: plain RTP (``RTP/AVP``);
- ``srtp-mand``: SDES-SRTP, required (answers only ``RTP/SAVP`` with ``a=crypto``);
- ``srtp``: SDES-SRTP, best effort (takes ``a=crypto`` on ``RTP/AVP`` too);
- ``dtls_srtp``: DTLS-SRTP (``UDP/TLS/RTP/SAVP(F)``, ``a=fingerprint``).

baresip 1.0's ``dtls_srtp`` makes its own self-signed certificate for DTLS
(``tls_set_selfsigned_rsa``, "dtls@baresip"); DTLS-SRTP authenticates by the
SDP's fingerprint, not by a CA, so the test needs no certificate of its own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.rtpengine_peer import free_udp_port, stop_process

__all__ = ["BARESIP", "BaresipPeer"]

BARESIP = "/usr/bin/baresip"
MODULES = Path("/usr/lib/baresip/modules")
#: What the echo peer loads, in this order: codecs, the audio bridge the echo
#: module needs, the two SRTP flavours, the accounts file reader (after the
#: codecs and encryptions its accounts name, or it drops them), and the echo
#: application.
REQUIRED_MODULES = ("g711", "g722", "aubridge", "srtp", "dtls_srtp", "account", "echo")


class _PortTakenError(Exception):
    """baresip could not bind its SIP port."""


def _free_sip_port() -> int:
    """A loopback port free for UDP and for TCP (baresip binds both)."""
    for _ in range(50):
        port = free_udp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no loopback port free for both UDP and TCP in 50 tries")


class BaresipPeer:
    """One baresip process with its own config directory, answering as ``sip:echo@127.0.0.1:PORT``.

    :param workdir: where the config directory and the log go.
    :param mediaenc: the account's media encryption (see the module docstring).
    :param audio_codecs: the codecs the account accepts, in baresip's names
        (``PCMU/8000/1``, ``G722/8000/1``).
    :param lifetime: baresip quits by itself after this many seconds (``-t``),
        so a test that dies cannot leave it running for long.
    """

    def __init__(
        self,
        workdir: Path,
        mediaenc: str | None = "srtp-mand",
        audio_codecs: tuple[str, ...] = ("PCMU/8000/1",),
        lifetime: int = 300,
    ) -> None:
        for name in ("baresip", *REQUIRED_MODULES):
            path = Path(BARESIP) if name == "baresip" else MODULES / f"{name}.so"
            if not path.exists() or shutil.which(BARESIP) is None:
                raise AssertionError(f"{path} is missing: install baresip-core")
        self.confdir = workdir / f"baresip-{uuid.uuid4().hex[:6]}"
        self.confdir.mkdir(parents=True)
        self.sip_port = _free_sip_port()
        self.mediaenc = mediaenc
        self.audio_codecs = audio_codecs
        self.lifetime = lifetime
        self.log_path = self.confdir / "baresip.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """The SIP URI a test calls."""
        return f"sip:echo@127.0.0.1:{self.sip_port}"

    def write_config(self) -> None:
        """Write ``config`` and ``accounts`` into the peer's own directory."""
        modules = "\n".join(f"module\t\t{m}.so" for m in REQUIRED_MODULES if m != "echo")
        (self.confdir / "config").write_text(
            f"""poll_method\t\tepoll
sip_listen\t\t127.0.0.1:{self.sip_port}
call_local_timeout\t120
call_max_calls\t\t16
audio_player\t\taubridge,nil
audio_source\t\taubridge,nil
audio_alert\t\taubridge,nil
rtp_timeout\t\t0
jitter_buffer_delay\t1-4
net_interface\t\t127.0.0.1
module_path\t\t{MODULES}
{modules}
module_app\t\techo.so
"""
        )
        params = ["regint=0", "answermode=auto", f"audio_codecs={','.join(self.audio_codecs)}"]
        if self.mediaenc:
            params.append(f"mediaenc={self.mediaenc}")
        (self.confdir / "accounts").write_text(f"<sip:echo@127.0.0.1>;{';'.join(params)}\n")

    def start(self, bound: float = 10.0, attempts: int = 3) -> None:
        """Start baresip and wait until it answers an OPTIONS on its SIP port.

        baresip listens on ``sip_listen`` over UDP and TCP at once (1.0
        has no setting to leave TCP out); when another process took one of
        those ports since it was picked, baresip exits at once, and it is
        started again on another port, ``attempts`` times at most.
        """
        for attempt in range(attempts):
            try:
                self._start_once(bound)
                return
            except _PortTakenError:
                if attempt == attempts - 1:
                    raise AssertionError(
                        f"baresip found its SIP port taken {attempts} times: {self.log()}"
                    ) from None
                self.sip_port = _free_sip_port()

    def _start_once(self, bound: float) -> None:
        self.write_config()
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [BARESIP, "-f", str(self.confdir), "-t", str(self.lifetime), "-v"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + bound
        while not self._answers_options():
            if self.process.poll() is not None:
                if "Address already in use" in self.log():
                    raise _PortTakenError()
                raise AssertionError(f"baresip exited with {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"baresip did not answer OPTIONS within {bound}s: {self.log()}"
                )
        for loaded in (
            "mediaenc: srtp-mand",
            "mediaenc: dtls_srtp",
            "echo: module loaded",
            "Populated 1 account",
        ):
            if loaded not in self.log():
                raise AssertionError(f"baresip did not report {loaded!r}: {self.log()}")

    def _answers_options(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            call_id = uuid.uuid4().hex
            s.sendto(
                (
                    f"OPTIONS {self.uri} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id[:12]};rport\r\n"
                    "Max-Forwards: 70\r\n"
                    f"From: <sip:probe@127.0.0.1:{port}>;tag={call_id[:8]}\r\n"
                    f"To: <{self.uri}>\r\n"
                    f"Call-ID: {call_id}\r\n"
                    "CSeq: 1 OPTIONS\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode(),
                ("127.0.0.1", self.sip_port),
            )
            s.settimeout(0.3)
            try:
                return s.recv(65535).startswith(b"SIP/2.0 ")
            except OSError:
                return False

    def running(self) -> bool:
        """Whether the process is still alive."""
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """baresip's output so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def stop(self, bound: float = 10.0) -> None:
        """Stop baresip (SIGTERM, then SIGKILL after ``bound``)."""
        stop_process(self.process, bound)
