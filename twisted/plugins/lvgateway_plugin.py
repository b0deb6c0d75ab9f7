"""The twistd dropin for the gateway: only a lazy ServiceMaker, so scanning plugins stays cheap."""

from twisted.application.service import ServiceMaker

lvgateway = ServiceMaker(
    "LiveVox gateway",
    "lvgateway.tap",
    "Bridge LiveVox virtual agents' calls to an AI voice vendor over SIP.",
    "lvgateway",
)
