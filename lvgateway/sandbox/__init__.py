"""Sandbox: a LiveVox simulator and AI echo bot to develop, test and demo against; never imported by the gateway."""
