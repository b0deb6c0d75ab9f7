"""Media profiles and codec maps per vendor endpoint: the defaults, the values, and the engine check."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import attrs
import pytest

from lvgateway import tap
from lvgateway.config import ConfigError, GatewayConfig, load_config
from lvgateway.config.media_profiles import (
    MEDIA_PROFILES,
    CodecMap,
    codec_map_supported,
    profile_supported,
)
from lvgateway.config.summary import summarise
from tests.test_config import MINIMAL, write_secret

ENDPOINT = 'uri = "sip:bot@127.0.0.1:5080"'
SECOND = '\n[[vendor.endpoints]]\nuri = "sip:bot@127.0.0.1:5090"\n'


def _load(tmp_path: Path, endpoint_extra: str, tail: str = "") -> GatewayConfig:
    write_secret(tmp_path / "token", "tok-123456789")
    write_secret(tmp_path / "pw", "agent-pw-secret")
    path = tmp_path / "gw.toml"
    path.write_text(MINIMAL.replace(ENDPOINT, ENDPOINT + "\n" + endpoint_extra) + tail)
    return load_config(str(path))


def _problems(tmp_path: Path, endpoint_extra: str, tail: str = "") -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, endpoint_extra, tail)
    return {p.path: p.message for p in caught.value.problems}


def test_endpoints_default_to_plain_rtp_without_a_codec_map(tmp_path: Path) -> None:
    """An endpoint that says nothing gets the rtp profile and untouched payloads, as before."""
    endpoint = _load(tmp_path, "").vendor.endpoints[0]
    assert endpoint.media_profile == "rtp"
    assert endpoint.codec_map is None


def test_rtp_profile_is_accepted_on_every_engine(tmp_path: Path) -> None:
    """Saying rtp explicitly is valid with the default engine."""
    assert _load(tmp_path, 'media_profile = "rtp"').vendor.endpoints[0].media_profile == "rtp"


@pytest.mark.parametrize("engine", ["auto", "rtpio", "twisted"])
@pytest.mark.parametrize("profile", ["srtp-sdes", "dtls-srtp"])
def test_srtp_profile_on_an_engine_without_srtp_names_the_endpoint(
    tmp_path: Path, engine: str, profile: str
) -> None:
    """An SRTP profile the engine cannot carry is an error on that endpoint's key, saying what is needed."""
    problems = _problems(
        tmp_path, f'media_profile = "{profile}"', f'\n[media]\nengine = "{engine}"\n'
    )
    message = problems["vendor.endpoints[0].media_profile"]
    assert repr(profile) in message and repr(engine) in message and "rtpengine" in message


def test_the_error_names_the_right_endpoint(tmp_path: Path) -> None:
    """With two endpoints, only the second's profile is wrong, and only its key is named."""
    problems = _problems(tmp_path, "", SECOND + 'media_profile = "srtp-sdes"\n')
    assert set(problems) == {"vendor.endpoints[1].media_profile"}


def test_unknown_profile_lists_the_choices(tmp_path: Path) -> None:
    """A profile name that does not exist is refused with the three names."""
    problems = _problems(tmp_path, 'media_profile = "zrtp"')
    message = problems["vendor.endpoints[0].media_profile"]
    assert all(repr(p) in message for p in MEDIA_PROFILES)


def test_codec_map_on_an_engine_that_does_not_transcode_is_an_error(tmp_path: Path) -> None:
    """A codec map with the default engine names the endpoint's codec_map key."""
    problems = _problems(tmp_path, 'codec_map = { livevox = "PCMU", vendor = "G722" }')
    assert "does not transcode" in problems["vendor.endpoints[0].codec_map"]


@pytest.mark.parametrize(
    ("table", "key", "found"),
    [
        ('{ livevox = "G722", vendor = "PCMU" }', "codec_map.livevox", "'G722'"),
        ('{ livevox = "PCMU", vendor = "g722" }', "codec_map.vendor", "'g722'"),
        ('{ livevox = "PCMU" }', "codec_map.vendor", "missing"),
        ('{ livevox = "PCMU", vendor = "PCMU" }', "codec_map.vendor", "nothing to transcode"),
        ('{ livevox = "PCMU", vendor = "G722", bitrate = 64 }', "codec_map.bitrate", ""),
    ],
)
def test_bad_codec_map_names_the_key(tmp_path: Path, table: str, key: str, found: str) -> None:
    """Codec names are checked against what each side may use, case and all."""
    problems = _problems(tmp_path, f"codec_map = {table}")
    assert found in problems[f"vendor.endpoints[0].{key}"]


def test_only_rtpengine_carries_srtp_and_transcodes() -> None:
    """The engine check: plain RTP everywhere, SRTP and codec maps on rtpengine only."""
    for engine in ("auto", "rtpio", "twisted", "rtpengine"):
        assert profile_supported(engine, "rtp")
    for profile in ("srtp-sdes", "dtls-srtp"):
        assert profile_supported("rtpengine", profile)
        assert not profile_supported("twisted", profile)
        assert not profile_supported("auto", profile)
    assert codec_map_supported("rtpengine") and not codec_map_supported("rtpio")


def test_codec_map_value() -> None:
    """A parsed map is a plain value the media engine reads."""
    assert CodecMap(livevox="PCMU", vendor="G722") == CodecMap("PCMU", "G722")


def test_summary_shows_a_profile_and_a_map_only_where_set(tmp_path: Path) -> None:
    """--check-config's summary names an endpoint's SRTP profile and codec map, and stays as it was for rtp."""
    config = _load(tmp_path, "")
    plain = config.vendor.endpoints[0]
    srtp = attrs.evolve(plain, media_profile="srtp-sdes", codec_map=CodecMap("PCMU", "G722"))
    changed = attrs.evolve(config, vendor=attrs.evolve(config.vendor, endpoints=(plain, srtp)))
    lines = [line for line in summarise(changed).splitlines() if line.startswith("vendor [")]
    assert lines == [
        "vendor [0]   sip:bot@127.0.0.1:5080",
        "vendor [1]   sip:bot@127.0.0.1:5080, media srtp-sdes, PCMU to G722",
    ]


RTPENGINE = '\n[media]\nengine = "rtpengine"\n[[media.rtpengine]]\naddress = "127.0.0.1:2223"\n'


@pytest.mark.parametrize("profile", ["srtp-sdes", "dtls-srtp"])
def test_srtp_profile_and_codec_map_with_rtpengine_pass_check_config(
    tmp_path: Path, profile: str
) -> None:
    """With engine = "rtpengine", an SRTP profile and a codec map are valid: --check-config exits 0 and shows them."""
    extra = f'media_profile = "{profile}"\ncodec_map = {{ livevox = "PCMU", vendor = "G722" }}'
    endpoint = _load(tmp_path, extra, RTPENGINE).vendor.endpoints[0]
    assert endpoint.media_profile == profile and endpoint.codec_map == CodecMap("PCMU", "G722")
    out, err = StringIO(), StringIO()
    assert tap.check_config(str(tmp_path / "gw.toml"), out, err) == 0, err.getvalue()
    assert f"media {profile}, PCMU to G722" in out.getvalue()
