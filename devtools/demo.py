"""`make demo`: the forwarder end to end on this machine, no AWS account and no Auth0 tenant needed.

It starts the project's Auth0 simulator and moto's server, creates what template.yaml declares,
and invokes the real handler (the template's Handler path) several times while traffic arrives:
a first run over history, a run with new and late events, a credential-stuffing burst past
Auth0's 1,000-result cap, and an idle run. After each run it prints what every user cost and got.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.traffic import attack_burst, generate_user_events, iso

USERS = {
    "auth0|64b7f0c2e4a1d9a3c1f00a11": "alice@example.com",
    "google-oauth2|109876543210987654321": "bob@example.com",
    "samlp|corp-okta|carol/admin@example.com": "carol@example.com",
    "auth0|64b7f0c2e4a1d9a3c1f00d44": "dave@example.com",
}
TENANT = RateLimit(burst=50, per_second=16)  # an Enterprise production tenant


def main() -> int:
    rng = random.Random(2026)
    with LocalAws() as aws, Auth0Simulator(rate_limit=TENANT, latency_s=0.02, seed=7) as sim:
        stack = LocalDeployment(
            aws,
            sim,
            stack_name="demo",
            watched_user_ids=list(USERS),
            START_FROM="earliest",
            AUTH0_RATE_LIMIT_PER_SECOND=str(TENANT.per_second),
            # The story told here is the per-user reads' (the tenant stream has its own tests).
            READ_MODE="per-user",
        )
        print(_banner(sim, stack))
        now = datetime.now(UTC)
        for user, name in USERS.items():
            count = 1400 if name.startswith("carol") else rng.randint(40, 120)
            history = generate_user_events(
                user,
                count=count,
                start=now - timedelta(days=2),
                end=now - timedelta(minutes=30),
                rng=rng,
                user_name=name,
            )
            sim.add_events(history)
        _run(
            stack, sim, "1. First run: the retained history of every user (carol has 1,400 events)"
        )

        now = datetime.now(UTC)
        bob = "google-oauth2|109876543210987654321"
        for user, name in USERS.items():
            sim.add_events(
                generate_user_events(
                    user,
                    count=rng.randint(3, 15),
                    start=now - timedelta(minutes=6),
                    end=now - timedelta(minutes=1 if user == bob else 4),
                    rng=rng,
                    user_name=name,
                )
            )
        _run(stack, sim, "2. New events for everyone")

        now = datetime.now(UTC)
        late = generate_user_events(bob, count=1, start=now, end=now, rng=rng, user_name=USERS[bob])
        late[0]["date"] = iso(now - timedelta(minutes=3))
        sim.add_events(late)
        dave = "auth0|64b7f0c2e4a1d9a3c1f00d44"
        burst = attack_burst(
            dave,
            count=1200,
            start=now - timedelta(minutes=3, seconds=30),
            seconds=200,
            rng=rng,
            user_name=USERS[dave],
        )
        sim.add_events(burst)
        _run(
            stack,
            sim,
            "3. Credential stuffing: 1,200 failed logins for dave; and an event of bob's that Auth0\n"
            "   made visible 3 minutes after its date, older than his newest forwarded event",
        )

        final = _run(stack, sim, "4. Nothing new: an idle run")
        print(
            "   (dave's idle cost is the overlap window: his 1,200 events of the last 10 minutes are\n"
            "    re-read so that late arrivals among them are not missed; once they are older than\n"
            "    the window, an idle dave costs one call again)"
        )
        ok = _verify(stack, sim)
        if final["forwarded"] != 0:
            print("!! the idle run forwarded something")
            ok = False
        return 0 if ok else 1


def _banner(sim: Auth0Simulator, stack: LocalDeployment) -> str:
    r = stack.resources
    return (
        "auth0-user-log-forwarder demo\n"
        f"  Auth0 simulator   {sim.base_url}  (tenant {sim.domain}, limit {TENANT.per_second:g} req/s, burst {TENANT.burst})\n"
        f"  AWS (moto server) {stack.aws.endpoint_url}\n"
        f"  from template.yaml: table {r.table_name}, log group {r.log_group}, bucket {r.bucket}, "
        f"secret {r.secret_id}\n"
    )


def _run(stack: LocalDeployment, sim: Auth0Simulator, title: str) -> dict[str, Any]:
    sim.stats.reset()
    invocation = stack.invoke()
    print(f"\n{title}")
    if invocation.error is not None:
        print(f"   run FAILED: {invocation.error}")
        return {"forwarded": -1}
    result = invocation.result or {}
    header = (
        f"   {'user':42} {'fetched':>8} {'forwarded':>9} {'findings':>8} {'gaps':>4} "
        f"{'->CloudWatch':>12} {'->S3':>6} {'calls':>6}  checkpoint (newest forwarded)"
    )
    print(header)
    for user in result["users"]:
        checkpoint = user["checkpoint"] or {}
        delivered = user["delivered"]
        notes = []
        if user["late_events"]:
            notes.append(f"{user['late_events']} late caught")
        if user["duplicates_dropped"]:
            notes.append(f"{user['duplicates_dropped']} repeats dropped")
        if user["quarantined"]:
            notes.append(f"{user['quarantined']} quarantined")
        if user["filtered"]:
            notes.append(f"{user['filtered']} filtered out")
        held = user["fetched"] - user["forwarded"] - user["duplicates_dropped"]
        held -= user["quarantined"] + user["filtered"]
        if held > 0:
            notes.append(f"{held} already held")
        if user["error"]:
            notes.append(f"ERROR {user['error']}")
        print(
            f"   {user['user_id'][:42]:42} {user['fetched']:>8} {user['forwarded']:>9} "
            f"{sum(user['findings'].values()):>8} {len(user['gaps']):>4} "
            f"{delivered.get('cloudwatch', 0):>12} {delivered.get('s3', 0):>6} "
            f"{sim.stats.calls(user_id=user['user_id']):>6}  "
            f"{checkpoint.get('watermark')}  {'; '.join(notes)}"
        )
    print(
        "   (fetched = forwarded + repeats dropped (the overlap window read again) + quarantined +\n"
        "    filtered out + already held (older than the checkpoint's floor: Auth0's page reaches\n"
        "    past it); each destination gets the events forwarded and the forwarder's own records:\n"
        "    ->CloudWatch = forwarded + findings + gap and quarantine records)"
    )
    metrics = invocation.metrics()
    print(
        f"   total: {result['forwarded']} forwarded, {result['api_calls']} Auth0 API calls "
        f"({result['rate_limited']} answered 429), {result['token_requests']} token request(s); "
        f"EMF metrics: EventsForwarded={metrics.get('EventsForwarded', 0):g}, "
        f"Auth0ApiCalls={metrics.get('Auth0ApiCalls', 0):g}, LagSeconds={metrics.get('LagSeconds', 0):.0f}"
    )
    return result


def _verify(stack: LocalDeployment, sim: Auth0Simulator) -> bool:
    print("\nWhat the destinations hold, against what Auth0 has:")
    ok = True
    for user in USERS:
        expected = {e["log_id"] for e in sim.visible_events(user)}
        for destination, records in (
            ("CloudWatch", stack.cloudwatch_records(user)),
            ("S3", stack.s3_records(user)),
        ):
            got = Counter(r["log_id"] for r in records if "log_id" in r)
            missing = len(expected - set(got))
            repeated = sum(1 for n in got.values() if n > 1)
            ok = ok and missing == 0 and repeated == 0
            print(
                f"   {user[:42]:42} {destination:10} expected {len(expected):5}  delivered {sum(got.values()):5}  missing {missing}  duplicated {repeated}"
            )
    example = stack.s3_events(next(iter(USERS)))[-1]
    print("\nOne forwarded line (S3 and CloudWatch carry the same):")
    print("   " + _short(example))
    findings = [r["_forwarder"] for r in stack.s3_records() if "log_id" not in r]
    findings = [f for f in findings if f.get("record_type") == "finding"]
    print(f"\nFindings the detection rules wrote ({len(findings)}), by user and rule:")
    by_rule = Counter((f["watched_user_id"], f["rule"]) for f in findings)
    for (user, rule), count in sorted(by_rule.items()):
        print(f"   {user[:42]:42} {rule:24} {count:4}")
    print("\nDemo " + ("passed: nothing lost, nothing repeated." if ok else "FAILED."))
    return ok


def _short(record: dict[str, Any]) -> str:
    import json

    text = json.dumps(record, separators=(",", ":"))
    return text if len(text) < 600 else text[:600] + "…"


if __name__ == "__main__":
    sys.exit(main())
