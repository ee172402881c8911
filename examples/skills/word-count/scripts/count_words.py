#!/usr/bin/env python3
"""Counts the words, lines and characters of the files named on the command
line (paths relative to the working directory), like `wc`."""

import sys


def main(paths):
    if not paths:
        print("usage: count_words.py FILE...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            print(f"{path}: {e.strerror}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {len(text.split())} words, {len(text.splitlines())} lines, {len(text)} characters")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
