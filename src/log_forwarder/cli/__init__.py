"""The operator's CLI, `auth0-log-forwarder` (also `python -m log_forwarder`).

Installed with `pip install '.[cli]'`; its libraries (click, rich) are never in the Lambda
package, and the function never imports this package.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .commands import cli
    except ImportError as error:  # the project was installed without the `cli` extra
        sys.stderr.write(
            f"auth0-log-forwarder needs its CLI libraries ({error.name} is missing): "
            "pip install 'auth0-user-log-forwarder[cli]' (or pip install '.[cli]' in a clone)\n"
        )
        raise SystemExit(2) from None
    cli()
