"""Print this machine's Debian apt sources for one release as one-line `deb` entries.

Reads /etc/apt/sources.list and sources.list.d (one-line and deb822 formats) and keeps
the entries signed by, or pointing at, Debian's archive: the base image is built from the
mirrors the machine is already configured with, never a hard-coded one.
Usage: python3 scripts/apt_sources.py CODENAME
"""

import sys
from pathlib import Path

APT = Path("/etc/apt")


def _deb822(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if current:
                stanzas.append(current)
            current = {}
            continue
        if line.startswith("#"):
            continue
        if line[0].isspace() and key:
            current[key] += " " + line.strip()
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower()
        current[key] = value.strip()
    return stanzas


def _is_debian(uri: str, signed_by: str) -> bool:
    return "debian-archive-keyring" in signed_by or "/debian" in uri


def entries(codename: str) -> list[str]:
    out: list[str] = []
    files = [APT / "sources.list", *sorted((APT / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for st in _deb822(text):
                if "deb" not in st.get("types", "").split():
                    continue
                if st.get("enabled", "yes").lower() == "no":
                    continue
                for uri in st.get("uris", "").split():
                    if not _is_debian(uri, st.get("signed-by", "")):
                        continue
                    for suite in st.get("suites", "").split():
                        if suite.split("-")[0] == codename:
                            out.append(f"deb {uri} {suite} main")
        elif path.suffix == ".list":
            for line in text.splitlines():
                words = line.split("#")[0].split()
                if len(words) < 3 or words[0] != "deb":
                    continue
                words = [w for w in words[1:] if not w.startswith("[")] or []
                if "]" in line:  # options: deb [opts] uri suite comps
                    words = line.split("]", 1)[1].split("#")[0].split()
                uri, suite = words[0], words[1]
                if _is_debian(uri, line) and suite.split("-")[0] == codename:
                    out.append(f"deb {uri} {suite} main")
    return list(dict.fromkeys(out))


if __name__ == "__main__":
    print("\n".join(entries(sys.argv[1])))
