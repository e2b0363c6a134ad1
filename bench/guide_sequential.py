#!/usr/bin/env python3
"""Bulk-delete files the way the Notary API guide shows it: the T2 baseline of BENCHMARKS.md.

One `DELETE {base}/stored-files` with `{"file_ids": [...]}` per chunk of IDs, one after
another, and each answer's certificates written to a SQLite table (one commit per answer).
With --threads N the same requests go out from a pool of N threads.

    NOTARY_TOKEN=sim-token python3 bench/guide_sequential.py \\
        --base-url http://127.0.0.1:8080/api/notary/v2 --file ids.txt --db guide.db

Prints one line: `guide: deleted N of M IDs in X.XXs (N IDs/s)`.
"""

import argparse
import os
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import requests


def main():
    args = parse_args()
    token = os.environ.get("NOTARY_TOKEN", "sim-token")
    with open(args.file, encoding="utf-8") as lines:
        file_ids = [line.strip() for line in lines if line.strip()]
    chunks = [
        file_ids[start:start + args.chunk_size]
        for start in range(0, len(file_ids), args.chunk_size)
    ]
    archive = Archive(args.db)

    send = partial(delete_chunk, args.base_url, token, archive)
    started = time.monotonic()
    if args.threads > 0:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            counts = list(pool.map(send, chunks))
    else:
        counts = [send(chunk) for chunk in chunks]
    elapsed = time.monotonic() - started

    n_deleted = sum(counts)
    print(
        f"guide: deleted {n_deleted} of {len(file_ids)} IDs in {elapsed:.2f}s "
        f"({n_deleted / elapsed:.0f} IDs/s)"
    )
    return 0 if n_deleted == len(file_ids) else 1


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the Notary API root")
    parser.add_argument("--file", required=True, help="file IDs, one per line")
    parser.add_argument("--db", required=True, help="SQLite database for the certificates")
    parser.add_argument("--chunk-size", type=int, default=100, help="IDs per request")
    parser.add_argument("--threads", type=int, default=0, help="send from a pool of N threads")
    return parser.parse_args()


def delete_chunk(base_url, token, archive, chunk):
    """Sends one bulk delete and archives the certificates of its answer."""
    response = requests.delete(
        f"{base_url}/stored-files",
        json={"file_ids": chunk},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    response.raise_for_status()
    deleted = response.json()["deleted"]
    archive.save([(entry["id"], entry["cert"]) for entry in deleted])
    return len(deleted)


class Archive:
    """A certificates table behind a lock, so that threads can share one connection."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute(
            "create table if not exists certificates (file_id text primary key, cert text not null)"
        )
        self.db.commit()

    def save(self, rows):
        with self.lock:
            self.db.executemany("insert or ignore into certificates values (?, ?)", rows)
            self.db.commit()


if __name__ == "__main__":
    sys.exit(main())
