"""zstd-compressed inputs to ``modelotel evaluate`` (issue 15, finding 11, the zstd half): a zstd bomb is refused
like a gzip one, in bounded memory and with one clear message; real zstd telemetry, one frame or several
concatenated (as ``cat a.zst b.zst`` or a rotating writer makes), is read whole.

Needs the optional ``zstandard`` package, which the dev extras install (pyproject.toml), so these tests never skip.
Real ``modelotel evaluate`` subprocesses with their peak RSS, as in test_input_bounds.py.
"""

from __future__ import annotations

import zstandard
from test_input_bounds import MiB, evaluate, events_of, good_lines, spec  # noqa: F401 (spec is a fixture)


def test_a_zstd_bomb_is_refused_with_one_clear_message_in_bounded_memory(tmp_path, spec):  # noqa: F811
    bomb = tmp_path / "bomb.jsonl.zst"
    with open(bomb, "wb") as fh, zstandard.ZstdCompressor(level=19).stream_writer(fh) as writer:
        chunk = b" " * (16 * MiB)
        for _ in range(64):  # 1 GiB of one line, a few tens of KB on disk
            writer.write(chunk)
    assert bomb.stat().st_size < MiB
    code, out, err, rss = evaluate("--slo", str(spec), "--data", str(bomb), "--format", "json")
    assert rss < 250 * MiB, f"peak RSS {rss / MiB:.0f} MiB on a 1 GiB zstd bomb"
    assert code == 4, (code, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("modelotel evaluate: error:")]
    assert len(lines) == 1 and "compression bomb" in lines[0] and "MODELOTEL_MAX_INFLATION" in lines[0], err
    assert "Traceback" not in err


def test_real_zstd_telemetry_is_read_whole_in_one_frame_or_several(tmp_path, spec):  # noqa: F811
    lines, n_events = good_lines()
    text = ("\n".join(lines) + "\n").encode()
    one = tmp_path / "one.jsonl.zst"
    one.write_bytes(zstandard.ZstdCompressor(level=3).compress(text))
    half = len(lines) // 2
    first, second = ("\n".join(part) + "\n" for part in (lines[:half], lines[half:]))
    several = tmp_path / "several.jsonl.zst"  # two frames, one after the other
    several.write_bytes(b"".join(zstandard.ZstdCompressor().compress(p.encode()) for p in (first, second)))
    for data in (one, several):
        code, out, err, _ = evaluate("--slo", str(spec), "--data", str(data), "--format", "json")
        assert code == 0, err
        events, report = events_of(out)
        assert events == n_events, (data.name, events, n_events, report)
        assert report["corrupt_lines"] == 0, report
