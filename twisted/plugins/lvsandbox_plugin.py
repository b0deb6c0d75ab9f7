"""The twistd dropin for the LiveVox simulator: only a lazy ServiceMaker."""

from twisted.application.service import ServiceMaker

lvsandbox = ServiceMaker(
    "LiveVox simulator",
    "lvgateway.sandbox.tap",
    "Simulate LiveVox's REST API (sessions, agents, term codes, contacts, AIA) with faults.",
    "lvsandbox",
)
