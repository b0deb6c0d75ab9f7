"""RFC 4475 (SIP torture test messages): the messages and the answer this gateway, a UAS, must give.

Where the messages come from: each ``NAME.dat`` file beside this module is
the RFC's own message, octet for octet, as decoded from the bit-exact
archive in RFC 4475 Appendix A (the ``<allOneLine>`` and ``<hex>``
conventions of section 3 resolved there; CRLF line ends; mpart01 carries its
binary S/MIME part). The file names are the RFC's. The table covers the
requests of sections 3.1.1 (valid), 3.1.2 (invalid), 3.2.1 (transaction
layer) and 3.3 (application layer), plus the responses those sections hold,
which a UAS that sent no request must discard; section 3.4.1 (RFC 2543
syntax) is left out: it has no Max-Forwards, no branch cookie and no From
tag, and RFC 4475 asks only that an element "not break" on it.

The answers:

- ``answered``: any final response but 400 (the message is valid; what
  the answer is depends on the method: 200 for OPTIONS, 405 or 501 for a
  method the gateway does not serve);
- ``404``: a valid INVITE to a user the gateway does not know;
- a code (400, 416, 420, 505): exactly that final response;
- ``discarded``: no answer at all (a response that matches no transaction).

Where RFC 4475 lets an element either reject a message with 400 or be
liberal (3.1.2.14 badaspec, 3.1.2.15 baddn), the gateway rejects: it copies
these headers into the vendor's leg, and will not pass on what it could not
read. Where it lets an element ignore a header it does not use (3.1.2.12
baddate: the gateway never reads Date), the gateway answers as if the
header were absent. Several messages are addressed to other hosts
(example.com); a UAS answers them as it would any request that reaches it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SECTIONS", "TORTURE", "message"]

_HERE = Path(__file__).resolve().parent

#: The RFC 4475 section of each message.
SECTIONS: dict[str, str] = {
    "wsinv": "3.1.1.1",
    "intmeth": "3.1.1.2",
    "esc01": "3.1.1.3",
    "escnull": "3.1.1.4",
    "esc02": "3.1.1.5",
    "lwsdisp": "3.1.1.6",
    "longreq": "3.1.1.7",
    "dblreq": "3.1.1.8",
    "semiuri": "3.1.1.9",
    "transports": "3.1.1.10",
    "mpart01": "3.1.1.11",
    "unreason": "3.1.1.12",
    "noreason": "3.1.1.13",
    "badinv01": "3.1.2.1",
    "clerr": "3.1.2.2",
    "ncl": "3.1.2.3",
    "scalar02": "3.1.2.4",
    "scalarlg": "3.1.2.5",
    "quotbal": "3.1.2.6",
    "ltgtruri": "3.1.2.7",
    "lwsruri": "3.1.2.8",
    "lwsstart": "3.1.2.9",
    "trws": "3.1.2.10",
    "escruri": "3.1.2.11",
    "baddate": "3.1.2.12",
    "regbadct": "3.1.2.13",
    "badaspec": "3.1.2.14",
    "baddn": "3.1.2.15",
    "badvers": "3.1.2.16",
    "mismatch01": "3.1.2.17",
    "mismatch02": "3.1.2.18",
    "bigcode": "3.1.2.19",
    "badbranch": "3.2.1",
    "insuf": "3.3.1",
    "unkscm": "3.3.2",
    "novelsc": "3.3.3",
    "unksm2": "3.3.4",
    "bext01": "3.3.5",
    "invut": "3.3.6",
    "regaut01": "3.3.7",
    "multi01": "3.3.8",
    "mcl01": "3.3.9",
    "bcast": "3.3.10",
    "zeromf": "3.3.11",
    "cparam01": "3.3.12",
    "cparam02": "3.3.13",
    "regescrt": "3.3.14",
    "sdp01": "3.3.15",
}

#: What the gateway must answer to each message: ``answered``, a status code, or ``discarded``.
TORTURE: dict[str, str] = {
    # 3.1.1 valid messages
    "wsinv": "answered",
    "intmeth": "answered",  # an unknown method: 501
    "esc01": "404",
    "escnull": "answered",  # REGISTER: the gateway is no registrar
    "esc02": "answered",  # RE%47IST%45R is a method of its own, unknown: 501
    "lwsdisp": "answered",
    "longreq": "404",
    "dblreq": "answered",  # the REGISTER; the INVITE after it is trailing octets
    "semiuri": "answered",
    "transports": "answered",
    "mpart01": "answered",
    "unreason": "discarded",
    "noreason": "discarded",
    # 3.1.2 invalid messages
    "badinv01": "400",
    "clerr": "400",
    "ncl": "400",
    "scalar02": "400",
    "scalarlg": "discarded",
    "quotbal": "400",
    "ltgtruri": "400",
    "lwsruri": "400",
    "lwsstart": "400",
    "trws": "400",
    "escruri": "400",
    "baddate": "404",
    "regbadct": "400",
    "badaspec": "400",
    "baddn": "400",
    "badvers": "505",
    "mismatch01": "400",
    "mismatch02": "400",
    "bigcode": "discarded",
    # 3.2 transaction layer
    "badbranch": "answered",
    # 3.3 application layer
    "insuf": "400",
    "unkscm": "416",
    "novelsc": "416",
    "unksm2": "400",  # a To that is not a SIP URI
    "bext01": "420",
    "invut": "404",
    "regaut01": "answered",
    "multi01": "400",
    "mcl01": "400",
    "bcast": "discarded",
    "zeromf": "answered",  # Max-Forwards 0 is for proxies; the UAS it names answers
    "cparam01": "answered",
    "cparam02": "answered",
    "regescrt": "answered",
    "sdp01": "404",
}


def message(name: str) -> bytes:
    """The torture message ``name`` as it goes on the wire, read from its ``.dat`` file."""
    if name not in SECTIONS:
        raise KeyError(name)
    return (_HERE / f"{name}.dat").read_bytes()
