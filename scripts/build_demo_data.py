"""Rebuild aligneval's packaged sentiment data, byte for byte, from the vaderSentiment 3.3.2 source archive.

    python scripts/build_demo_data.py                 # runs `pip download` into a temp folder
    python scripts/build_demo_data.py --archive vaderSentiment-3.3.2.tar.gz

Source: Hutto & Gilbert (ICWSM 2014) human-rated sentences, shipped inside the sdist of
vadersentiment==3.3.2 (MIT). Movie snippets keep Pang & Lee's original polarity (id <= 5331 positive);
the other domains are labelled by the sign of the mean human rating with |rating| < 0.5 dropped.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ARCHIVE_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
OUT = Path(__file__).resolve().parents[1] / "aligneval" / "data" / "sentiment"
SPLIT_SEED = 2014
MOVIE_TEST, MOVIE_DEV = 2000, 1000
POSITIVE_MAX_ID = 5331  # Pang & Lee's polarity files: the first 5331 sentences are positive
NEUTRAL_BAND = 0.5
DOMAINS = {"amazon": "amazonReviewSnippets", "tweets": "tweets", "nyt": "nytEditorialSnippets"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_archive(tmp: Path | None = None) -> bytes:
    tmp = tmp or Path(tempfile.mkdtemp())
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "vadersentiment==3.3.2", "-d", str(tmp)],
        check=True,
    )
    return next(tmp.glob("vaderSentiment-3.3.2.tar.gz")).read_bytes()


def ground_truth(inner: tarfile.TarFile, name: str) -> list[tuple[str, float, str]]:
    raw = inner.extractfile(f"hutto_ICWSM_2014/{name}_GroundTruth.txt").read().decode("utf-8")
    rows = []
    for line in raw.splitlines():
        if line.strip():
            ident, rating, text = line.split("\t", 2)
            rows.append((ident.strip(), float(rating), text.strip()))  # ids look like "12" or "3_7"
    return rows


def write_jsonl_gz(path: Path, rows: list[dict]) -> str:
    payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(payload)
    path.write_bytes(buffer.getvalue())
    return sha256(buffer.getvalue())


def movie_rows(rows):
    return [
        {"id": f"movie-{i}", "text": t, "label": "positive" if int(i) <= POSITIVE_MAX_ID else "negative",
         "rating": r}
        for i, r, t in rows
    ]


def domain_rows(prefix, rows):
    return [
        {"id": f"{prefix}-{i}", "text": t, "label": "positive" if r > 0 else "negative", "rating": r}
        for i, r, t in rows
        if abs(r) >= NEUTRAL_BAND
    ]


def build(archive: bytes, out: Path = OUT) -> dict[str, dict]:
    if sha256(archive) != ARCHIVE_SHA256:
        raise SystemExit(f"archive sha256 {sha256(archive)} != expected {ARCHIVE_SHA256}")
    outer = tarfile.open(fileobj=io.BytesIO(archive))
    inner_bytes = outer.extractfile(INNER).read()
    inner = tarfile.open(fileobj=io.BytesIO(inner_bytes))

    movies = movie_rows(ground_truth(inner, "movieReviewSnippets"))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(movies))
    parts = {
        "movie_test": sorted(order[:MOVIE_TEST]),
        "movie_dev": sorted(order[MOVIE_TEST:MOVIE_TEST + MOVIE_DEV]),
        "movie_train": sorted(order[MOVIE_TEST + MOVIE_DEV:]),
    }
    splits = {name: [movies[i] for i in idx] for name, idx in parts.items()}
    for short, long_name in DOMAINS.items():
        splits[short] = domain_rows(short, ground_truth(inner, long_name))

    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, rows in splits.items():
        digest = write_jsonl_gz(out / f"{name}.jsonl.gz", rows)
        counts = {lab: sum(r["label"] == lab for r in rows) for lab in ("negative", "positive")}
        manifest[name] = {"file": f"{name}.jsonl.gz", "rows": len(rows), "labels": counts, "sha256": digest}
    meta = {
        "source": "vadersentiment==3.3.2 sdist (pip download --no-deps --no-binary :all:)",
        "archive_sha256": ARCHIVE_SHA256,
        "inner_archive": INNER,
        "inner_archive_sha256": sha256(inner_bytes),
        "split_seed": SPLIT_SEED,
        "neutral_band": NEUTRAL_BAND,
        "licence": "MIT (C.J. Hutto, 2016); cite Hutto & Gilbert, ICWSM 2014",
        "splits": manifest,
    }
    (out / "manifest.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, help="vaderSentiment-3.3.2.tar.gz (default: pip download it)")
    args = parser.parse_args()
    archive = args.archive.read_bytes() if args.archive else fetch_archive()
    for name, info in build(archive).items():
        print(f"{name:12s} {info['rows']:6d} rows  {info['labels']}  {info['sha256'][:12]}")


if __name__ == "__main__":
    main()
