"""Search logs and files for every secret and token the sandbox issued, without printing any.

``python -m sandbox.scan_secrets LOG_OR_DIR... --secrets .sandbox/demo/issued-secrets.txt``
prints one ``file:line:column: kind (encoding)`` line per occurrence and a summary, writes the
figures as JSON with ``--json``, and exits 1 when anything was found (2 when there was nothing to
search for, so a broken recording cannot pass as clean).

Each value is searched for as written and in the encodings a leak would most likely take: base64
(standard and URL-safe alphabets, at each of the three byte alignments, so a value inside a larger
encoded string such as an HTTP Basic ``user:password`` header is found too), percent-encoding
(``quote`` and ``quote_plus``, as in a query string or a form body) and JSON string escaping.

The search is linear in the size of the input whatever the number of values: every value of at
least ``ANCHOR + STRIDE - 1`` bytes is indexed by ``STRIDE`` of its ``ANCHOR``-byte substrings,
and the input is probed every ``STRIDE`` bytes; any occurrence contains exactly one probe whose
window is one of its indexed substrings. Shorter values are searched for directly.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import secrets_registry

ANCHOR = 12
STRIDE = 8
CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Needle:
    """One byte string to search for: a secret in one encoding."""

    data: bytes
    kind: str
    encoding: str


@dataclass(frozen=True, order=True)
class Finding:
    """Where a secret was found; deliberately holds no part of the secret."""

    source: str
    line: int
    column: int
    kind: str
    encoding: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.kind} ({self.encoding})"


@dataclass
class ScanResult:
    """Figures of one search: what was searched, for how many values, and every finding."""

    secrets_known: int
    needles: int
    files: int = 0
    lines: int = 0
    bytes: int = 0
    findings: list[Finding] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The figures for ``out/verify-*.json`` (locations only, never a value)."""
        return {
            "secretsKnown": self.secrets_known,
            "needles": self.needles,
            "filesScanned": self.files,
            "linesScanned": self.lines,
            "bytesScanned": self.bytes,
            "found": len(self.findings),
            "findings": [str(f) for f in self.findings[:100]],
        }


def encodings(value: str) -> dict[str, bytes]:
    """``value`` as written and in each encoding searched for, by encoding name (no duplicates)."""
    raw = value.encode("utf-8")
    forms: dict[str, bytes] = {"plain": raw}
    for alphabet, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for shift in range(3):
            fragment = _aligned_base64(raw, shift, encode)
            if fragment:
                forms[f"{alphabet}+{shift}" if shift else alphabet] = fragment
    forms["url"] = urllib.parse.quote(value, safe="").encode("ascii")
    forms["form"] = urllib.parse.quote_plus(value, safe="").encode("ascii")
    forms["json"] = json.dumps(value)[1:-1].encode("ascii")
    unique: dict[str, bytes] = {}
    for name, data in forms.items():
        if data not in unique.values():
            unique[name] = data
    return unique


def _aligned_base64(raw: bytes, shift: int, encode: Any) -> bytes:
    """The base64 characters that depend on ``raw`` alone when it starts ``shift`` bytes into an
    encoded string: characters mixing its bits with a neighbour's are left out."""
    encoded: bytes = encode(b"\0" * shift + raw)
    first = -(-8 * shift // 6)  # ceil: the first character holding no bit of the pad bytes
    last = 8 * (shift + len(raw)) // 6  # floor: characters wholly inside raw end here
    return encoded[first:last]


class Scanner:
    """Searches bytes for every encoding of every value of ``issued`` (``{value: kind}``)."""

    def __init__(self, issued: Mapping[str, str]) -> None:
        self.secrets_known = len(issued)
        self.needles: list[Needle] = []
        for value, kind in issued.items():
            for encoding, data in encodings(value).items():
                self.needles.append(Needle(data, kind, encoding))
        # Indexed needles: each under STRIDE consecutive ANCHOR-byte substrings ending at its tail.
        self._index: dict[bytes, list[tuple[Needle, int]]] = {}
        self._short: list[Needle] = []
        for needle in self.needles:
            size = len(needle.data)
            if size < ANCHOR + STRIDE - 1:
                self._short.append(needle)
                continue
            for offset in range(size - ANCHOR - STRIDE + 1, size - ANCHOR + 1):
                key = needle.data[offset : offset + ANCHOR]
                self._index.setdefault(key, []).append((needle, offset))
        self._longest = max((len(n.data) for n in self.needles), default=0)

    def hits(self, data: bytes) -> set[tuple[int, Needle]]:
        """(offset, needle) of every occurrence of any needle in ``data``."""
        found: set[tuple[int, Needle]] = set()
        if self._index:
            probes = {data[p : p + ANCHOR] for p in range(0, len(data) - ANCHOR + 1, STRIDE)}
            for key in probes & self._index.keys():
                for position in _all(data, key):
                    for needle, offset in self._index[key]:
                        start = position - offset
                        if start >= 0 and data.startswith(needle.data, start):
                            found.add((start, needle))
        for needle in self._short:
            found.update((start, needle) for start in _all(data, needle.data))
        return found

    def scan_bytes(self, data: bytes, source: str) -> list[Finding]:
        """Every finding in ``data``, with 1-based line and column."""
        findings = []
        for start, needle in self.hits(data):
            line = 1 + data.count(b"\n", 0, start)
            column = start - (data.rfind(b"\n", 0, start) + 1) + 1
            findings.append(Finding(source, line, column, needle.kind, needle.encoding))
        return sorted(findings)

    def scan_file(self, path: Path, source: str | None = None) -> tuple[int, int, list[Finding]]:
        """Search one file in chunks; returns (lines, bytes, findings)."""
        name = source or str(path)
        overlap = max(self._longest - 1, 0)
        lines = size = 0
        seen: set[tuple[int, Needle]] = set()
        findings: list[Finding] = []
        # The unscanned-for-new-starts tail of the previous chunk, where it starts (absolute
        # offset), its line number, and where that line starts: a value cut by a chunk boundary
        # is found whole in the next window, and positions stay those of the whole file.
        carry, base, line_at_base, line_start = b"", 0, 1, 0
        ends_with_newline = True
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                size += len(chunk)
                lines += chunk.count(b"\n")
                ends_with_newline = chunk.endswith(b"\n")
                data = carry + chunk
                for start, needle in self.hits(data):
                    if (base + start, needle) in seen:
                        continue
                    seen.add((base + start, needle))
                    newline = data.rfind(b"\n", 0, start)
                    column = start - newline if newline >= 0 else base + start - line_start + 1
                    line = line_at_base + data.count(b"\n", 0, start)
                    findings.append(Finding(name, line, column, needle.kind, needle.encoding))
                keep = min(overlap, len(data))
                cut = len(data) - keep
                newline = data.rfind(b"\n", 0, cut)
                if newline >= 0:
                    line_start = base + newline + 1
                line_at_base += data.count(b"\n", 0, cut)
                carry, base = data[cut:], base + cut
        if size and not ends_with_newline:
            lines += 1
        return lines, size, sorted(findings)

    def scan_paths(self, paths: Iterable[Path], result: ScanResult | None = None) -> ScanResult:
        """Search every file of ``paths`` (directories recursively) into ``result``."""
        result = result or ScanResult(self.secrets_known, len(self.needles))
        for path in _files(paths):
            lines, size, findings = self.scan_file(path)
            result.files += 1
            result.lines += lines
            result.bytes += size
            result.findings.extend(findings)
        return result

    def scan_text(self, text: str, source: str, result: ScanResult | None = None) -> ScanResult:
        """Search an in-memory text (a captured stdout, an error body) into ``result``."""
        result = result or ScanResult(self.secrets_known, len(self.needles))
        data = text.encode("utf-8", "surrogateescape")
        result.files += 1
        result.lines += data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
        result.bytes += len(data)
        result.findings.extend(self.scan_bytes(data, source))
        return result


def _all(data: bytes, needle: bytes) -> Iterator[int]:
    start = data.find(needle)
    while start >= 0:
        yield start
        start = data.find(needle, start + 1)


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path


def main(argv: list[str] | None = None) -> int:
    """Command line: search files for the values of a registry dump; exit 1 on any finding."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.scan_secrets", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="files or directories to search")
    parser.add_argument(
        "--secrets", type=Path, required=True, help="a file written by secrets_registry.dump"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    issued = secrets_registry.load(args.secrets)
    scanner = Scanner(issued)
    result = scanner.scan_paths(args.paths)
    for finding in result.findings:
        sys.stdout.write(f"{finding}\n")
    figures = result.as_json()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", "utf-8")
    sys.stdout.write(
        f"{figures['found']} found; {figures['secretsKnown']} secrets "
        f"({figures['needles']} encoded forms) searched in {figures['filesScanned']} files, "
        f"{figures['linesScanned']} lines\n"
    )
    if not issued or not result.lines:
        sys.stderr.write("nothing to search for or nothing searched: the check proves nothing\n")
        return 2
    return 1 if result.findings else 0


if __name__ == "__main__":
    sys.exit(main())
