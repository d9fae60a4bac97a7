"""Read a TensorBoard event file written by nnunet-logging with TensorBoard's own reader and compare scalars.

Usage: python check_tensorboard.py EVENT_FILE EXPECTED_JSON
EXPECTED_JSON: {"tag": [[step, value, wall_time], ...], ...}. Exit 0 when every tag, step, value (float32)
and wall time match and no extra tags exist. Needs `pip install tensorboard` (tested with 2.21.0).
"""
import json
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main(event_file, expected_json):
    with open(expected_json) as f:
        expected = json.load(f)
    acc = event_accumulator.EventAccumulator(event_file, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = sorted(acc.Tags()["scalars"])
    if tags != sorted(expected):
        print(f"tags differ: {tags} vs {sorted(expected)}")
        return 1
    bad = 0
    for tag, rows in expected.items():
        got = [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]
        want = [(s, f32(v), w) for s, v, w in rows]
        if got != want:
            print(f"{tag}: got {got[:5]}... want {want[:5]}...")
            bad += 1
    # EventAccumulator parses the first event's "brain.Event:2" into the number 2.0
    if acc.file_version != 2.0:
        print(f"file_version {acc.file_version!r}")
        bad += 1
    n = sum(len(v) for v in expected.values())
    print(f"tensorboard {event_accumulator.__name__}: {len(tags)} tags, {n} scalars match" if not bad else "MISMATCH")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
