"""Sandbox: a LiveVox simulator and AI echo bot to develop, test and demo against; never imported by the gateway.

The LiveVox simulator (``twistd -n lvsandbox --config etc/sandbox.toml``):

- :mod:`.sandbox_config`: ``etc/sandbox.toml`` parsed into frozen attrs classes;
- :mod:`.livevox_state`: sessions, agent lines, calls and term codes on an injected clock;
- :mod:`.livevox_records`: the records it keeps and their LiveVox JSON forms;
- :mod:`.contacts`: the Contact Manager (create, partial update, read);
- :mod:`.journal`: the bounded record of every request;
- :mod:`.faults`: latency, error rates, fail-next-N, outages;
- :mod:`.simulator`: :class:`~.simulator.Simulator`, LiveVox's REST routes over the model;
- :mod:`.sandbox_admin`: the ``/_sandbox/`` admin API;
- :mod:`.livevox_web`: the twisted.web resource tree and ``start_simulator`` for tests;
- :mod:`.tap`: the twistd plugin's ``Options`` and ``makeService``;
- :mod:`.testing`: a test configuration and an in-memory request driver.

What it guesses where LiveVox is not documented: docs/livevox-unknowns.md.
"""
