"""lvgateway: keeps LiveVox virtual agents READY and bridges their calls to an AI voice vendor."""

__all__: list[str] = []
