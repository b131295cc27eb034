"""Run pip-audit on the Lambda's runtime requirements and say plainly what it could check.

pip-audit asks a vulnerability service on the network. Where none answers (this project's
machines), it reports every package as "could not be audited" and would look clean. This script
fails on any vulnerability found, and prints NOT AUDITED, naming the packages, for everything
it could not check, so a run that checked nothing never reads as a clean bill of health.

    python -m devtools.security.audit PIP_AUDIT REQUIREMENTS
"""

from __future__ import annotations

import json
import subprocess
import sys


def main(pip_audit: str, requirements: str) -> int:
    done = subprocess.run(  # noqa: S603 - our own tool, our own file
        [pip_audit, "-r", requirements, "--format", "json", "--progress-spinner", "off"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        print(f"pip-audit gave no report (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return 1
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    vulnerable = [d for d in audited if d.get("vulns")]
    for dependency in vulnerable:
        ids = ", ".join(v.get("id", "?") for v in dependency["vulns"])
        print(f"VULNERABLE {dependency['name']} {dependency.get('version')}: {ids}")
    print(
        f"pip-audit: {len(audited)} of {len(dependencies)} runtime packages audited, "
        f"{len(vulnerable)} with known vulnerabilities"
    )
    if skipped:
        names = ", ".join(f"{d['name']}" for d in skipped)
        print(f"NOT AUDITED ({len(skipped)}): {names}")
        print("  (no vulnerability service answered from this machine: these were not checked)")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
