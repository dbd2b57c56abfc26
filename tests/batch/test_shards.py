"""`--shard K/N`: array jobs (Slurm) split one input list by a hash of each input path."""

from __future__ import annotations

import hashlib
import json

from batch_cli import music, stemsplit, write_audio


def test_shards_split_the_inputs_by_the_hash_of_their_path(tiny_model, tmp_path):
    names = [f"song{i}.wav" for i in range(5)]
    for number, name in enumerate(names):
        write_audio(tmp_path / "in" / name, music(0.2, offset=900 * number))
    expected: dict[int, set[str]] = {0: set(), 1: set()}
    for name in names:  # the rule as docs/scale-out.md states it
        digest = hashlib.sha256(str(tmp_path / "in" / name).encode()).digest()
        expected[int.from_bytes(digest[:8], "big") % 2].add(name)
    for index in (0, 1):
        result = stemsplit(tmp_path / "in", "--checkpoint", tiny_model, "-o", tmp_path / "out",
                           "--shard", f"{index}/2", "--json")  # fmt: skip
        assert result.returncode == 0, result.stderr
        ran = {json.loads(result.stdout)["tracks"][i]["input"].rsplit("/", 1)[1]
               for i in range(len(expected[index]))}  # fmt: skip
        assert len(json.loads(result.stdout)["tracks"]) == len(expected[index])
        assert ran == expected[index]


def test_a_bad_shard_is_one_usage_error(tmp_path):
    write_audio(tmp_path / "a.wav", music(0.1))
    result = stemsplit(tmp_path / "a.wav", "--shard", "2/2", "-o", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --shard must be K/N with 0 <= K < N")
    assert "Traceback" not in result.stderr
