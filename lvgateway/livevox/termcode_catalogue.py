"""Finding a term code in a service's catalogue by the names the config and vendors use.

A term code is asked for by

- a name from ``[wrapup.term_codes]`` (``done``, ``transfer``…), which maps
  to a LiveVox term code name or id;
- a LiveVox term code name (``AI Completed``, any case);
- a LiveVox term code id (``101416228``).

Pure functions over a :class:`~lvgateway.livevox.parsing.TermCodeCatalogue`
(``GET /callControl/agent/termCode?serviceId=``), shared by every part that
saves term codes: the wrap-up of calls the gateway knows, and the agent
pool's repair of agents LiveVox holds on a call the gateway does not know.
Fetching and caching the catalogue is each caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping

from lvgateway.livevox.parsing import TermCode, TermCodeCatalogue

__all__ = ["choose_term_code", "find_term_code"]


def find_term_code(
    catalogue: TermCodeCatalogue, requested: str, names: Mapping[str, str]
) -> TermCode | None:
    """Return the term code ``requested`` names: through the config's names first, then as a LiveVox name or id.

    :param catalogue: the service's term codes.
    :param requested: a config name, a LiveVox name or an id.
    :param names: the config's names (``WrapupConfig.term_codes``), each
        mapped to a LiveVox name or id.
    """
    mapped = names.get(requested.strip())
    if mapped is not None:
        found = catalogue.find(mapped)
        if found is not None:
            return found
    return catalogue.find(requested)


def choose_term_code(
    catalogue: TermCodeCatalogue, requested: str, names: Mapping[str, str], fallback: str
) -> tuple[TermCode, bool] | None:
    """Return the term code for ``requested``, else for ``fallback``, and whether it is the fallback.

    :param catalogue: the service's term codes.
    :param requested: a config name, a LiveVox name or an id.
    :param names: the config's names (``WrapupConfig.term_codes``).
    :param fallback: what to use when ``requested`` is not in the catalogue
        (``WrapupConfig.fallback_term_code``).
    :returns: ``None`` when neither is in the catalogue.
    """
    code = find_term_code(catalogue, requested, names)
    if code is not None:
        return code, False
    code = find_term_code(catalogue, fallback, names)
    if code is not None:
        return code, True
    return None
