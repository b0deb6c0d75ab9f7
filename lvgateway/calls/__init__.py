"""Calls: the durable call store, the AI vendor's dispositions, and the wrap-up of AIA, contact and term code.

The modules, one concept each:

- :mod:`~lvgateway.calls.service`: :class:`CallService`, the part as one
  service (start-up recovery, timers, the SIP-facing and admin methods);
- :mod:`~lvgateway.calls.interfaces`: ``ICalls`` (what SIP and the vendor API
  call), ``ICallLegs`` (what SIP implements), ``ICallAdmin`` (operators);
- :mod:`~lvgateway.calls.records`: the frozen call record, disposition and states;
- :mod:`~lvgateway.calls.disposition`: dispositions from BYE/REFER headers and JSON;
- :mod:`~lvgateway.calls.store`: the SQLite store (WAL, group commit, its own thread);
- :mod:`~lvgateway.calls.book`: the newest version of each unsettled record, written through;
- :mod:`~lvgateway.calls.wrapup`: the wrap-up pipeline (steps, retries, dead letters, transfers);
- :mod:`~lvgateway.calls.ids`: LiveVox's call ids, and "is the call closed", from the agent's status;
- :mod:`~lvgateway.calls.termcodes`: term code names and ids against the service's catalogue;
- :mod:`~lvgateway.calls.recovery`: closing live calls and resuming wrap-ups at start-up;
- :mod:`~lvgateway.calls.metrics`, :mod:`~lvgateway.calls.errors`,
  :mod:`~lvgateway.calls.blocking` (where SQLite runs);
- :mod:`~lvgateway.calls.testing`: verified fakes and stand-ins, for tests only.
"""
