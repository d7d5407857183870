"""The approvals endpoints of the HTTP API, with real tokens from a LocalIssuer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from approvals_helpers import Auth

from pgwarden.api.app import create_app
from pgwarden.approvals import ApprovalService, PendingApproval
from pgwarden.auth import LocalIssuer

Scenario = Callable[[httpx.AsyncClient, ApprovalService], Awaitable[Any]]


def run_api(auth: Auth, svc: ApprovalService | None, scenario: Scenario) -> Any:
    app = create_app(verifier=auth.verifier, approvals=svc)

    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            try:
                return await scenario(c, svc)  # type: ignore[arg-type]
            finally:
                if svc is not None:
                    await svc.aclose()

    return asyncio.run(main())


def bearer(auth: Auth, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.token(name)}"}


async def ask(
    svc: ApprovalService, people: dict[str, Any], who: str = "agent-7"
) -> PendingApproval:
    return await svc.request(
        session_id="sess-1",
        sql="DROP TABLE orders",
        params=["x"],
        requester=people[who],
        target="shop",
        rule="hold-ddl",
        reason="held",
    )


def test_every_endpoint_needs_a_valid_token(auth, make_service, people) -> None:
    stranger = LocalIssuer.generate().issue("alice", ["dba"])  # right name, wrong key

    async def scenario(c: httpx.AsyncClient, svc: ApprovalService) -> None:
        pending = await ask(svc, people)
        calls = [
            ("GET", "/api/v1/approvals"),
            ("GET", f"/api/v1/approvals/{pending.id}"),
            ("POST", f"/api/v1/approvals/{pending.id}/approve"),
            ("POST", f"/api/v1/approvals/{pending.id}/deny"),
        ]
        for method, path in calls:
            for headers in (
                {},
                {"Authorization": "Basic YWxpY2U6eA=="},
                {"Authorization": "Bearer not-a-token"},
                {"Authorization": f"Bearer {stranger}"},
            ):
                r = await c.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.text)
        assert svc.get(pending.id).state == "pending"  # type: ignore[union-attr]

    run_api(auth, make_service(), scenario)


def test_without_the_service_503(auth) -> None:
    async def scenario(c: httpx.AsyncClient, svc: Any) -> None:
        for method, path in (
            ("GET", "/api/v1/approvals"),
            ("GET", "/api/v1/approvals/apr_x"),
            ("POST", "/api/v1/approvals/apr_x/approve"),
            ("POST", "/api/v1/approvals/apr_x/deny"),
        ):
            r = await c.request(method, path, headers=bearer(auth, "alice"))
            assert r.status_code == 503
            assert "not configured" in r.json()["detail"]
        # authentication still comes first
        assert (await c.get("/api/v1/approvals")).status_code == 401

    run_api(auth, None, scenario)


def test_approve_through_the_api_wakes_the_statement(auth, make_service, people) -> None:
    async def scenario(c: httpx.AsyncClient, svc: ApprovalService) -> None:
        pending = await ask(svc, people)
        waiter = asyncio.create_task(pending.wait())
        r = await c.post(
            f"/api/v1/approvals/{pending.id}/approve",
            headers=bearer(auth, "alice"),
            json={"reason": "checked the backup"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"] == pending.id
        assert body["state"] == "approved"
        assert body["deciders"] == ["alice"]
        assert body["reasons"] == ["checked the backup"]
        assert body["decided_at"].endswith("Z")
        assert body["url"] == f"https://console.example/approvals/{pending.id}"
        assert body["approvals_required"] == 1
        outcome = await asyncio.wait_for(waiter, 5)
        assert outcome.state == "approved"
        # deciding again: 409 whichever way
        for name, verb in (("alice", "approve"), ("bob", "deny"), ("bob", "approve")):
            r = await c.post(f"/api/v1/approvals/{pending.id}/{verb}", headers=bearer(auth, name))
            assert r.status_code == 409
            assert "already approved" in r.json()["detail"]

    run_api(auth, make_service(poll_interval=30), scenario)


def test_deny_with_and_without_a_body(auth, make_service, people) -> None:
    async def scenario(c: httpx.AsyncClient, svc: ApprovalService) -> None:
        one = await ask(svc, people)
        r = await c.post(f"/api/v1/approvals/{one.id}/deny", headers=bearer(auth, "bob"))
        assert r.status_code == 200, r.text
        assert (r.json()["state"], r.json()["deciders"], r.json()["reasons"]) == (
            "denied",
            ["bob"],
            [""],
        )
        two = await ask(svc, people)
        r = await c.post(
            f"/api/v1/approvals/{two.id}/deny",
            headers={**bearer(auth, "bob"), "Content-Type": "application/json"},
            content=b"null",
        )
        assert r.status_code == 200 and r.json()["state"] == "denied"

    run_api(auth, make_service(), scenario)


def test_who_may_decide(auth, make_service, people) -> None:
    async def scenario(c: httpx.AsyncClient, svc: ApprovalService) -> None:
        pending = await ask(svc, people, "agent-7@dba")  # the requester holds a dba token
        url = f"/api/v1/approvals/{pending.id}"
        for name in ("agent-7@dba", "agent-7", "Agent-7", "AGENT-7"):
            r = await c.post(f"{url}/approve", headers=bearer(auth, name))
            assert r.status_code == 403, name
        r = await c.post(f"{url}/approve", headers=bearer(auth, "agent-7@dba"))
        assert r.json()["detail"] == "nobody may approve their own statement"
        r = await c.post(f"{url}/deny", headers=bearer(auth, "agent-7@dba"))
        assert r.status_code == 403
        for name in ("mallory", "dave-wronggroup"):
            r = await c.post(f"{url}/approve", headers=bearer(auth, name))
            assert r.status_code == 403
            assert "approver groups" in r.json()["detail"]
        r = await c.post("/api/v1/approvals/apr_doesnotexist/approve", headers=bearer(auth, "bob"))
        assert r.status_code == 404
        # ids are path segments, nothing more
        r = await c.post("/api/v1/approvals/..%2F..%2Fhealthz/approve", headers=bearer(auth, "bob"))
        assert r.status_code == 404
        assert svc.get(pending.id).state == "pending"  # type: ignore[union-attr]

    run_api(auth, make_service(), scenario)


def test_two_person_rule_over_http(auth, make_service, people) -> None:
    async def scenario(c: httpx.AsyncClient, svc: ApprovalService) -> None:
        pending = await ask(svc, people)
        url = f"/api/v1/approvals/{pending.id}/approve"
        r = await c.post(url, headers=bearer(auth, "alice"), json={"reason": "one"})
        assert r.status_code == 200 and r.json()["state"] == "pending"
        assert r.json()["deciders"] == ["alice"] and r.json()["decided_at"] is None
        r = await c.post(url, headers=bearer(auth, "alice"))
        assert r.status_code == 409 and "already voted" in r.json()["detail"]
        r = await c.post(url, headers=bearer(auth, "carol"), json={"reason": "two"})
        assert r.status_code == 200 and r.json()["state"] == "approved"
        assert r.json()["deciders"] == ["alice", "carol"]
        assert (await asyncio.wait_for(pending.wait(), 5)).state == "approved"

    run_api(auth, make_service(min_approvals=2), scenario)


def test_expired_and_withdrawn_cannot_be_approved(auth, make_service, people) -> None:
    async def scenario(c: httpx.AsyncClient, svc: ApprovalService) -> None:
        short = await ask(svc, people)
        assert (await asyncio.wait_for(short.wait(), 5)).state == "expired"
        r = await c.post(f"/api/v1/approvals/{short.id}/approve", headers=bearer(auth, "alice"))
        assert r.status_code == 409 and "already expired" in r.json()["detail"]

    run_api(auth, make_service(timeout=0.2), scenario)

    async def withdrawn(c: httpx.AsyncClient, svc: ApprovalService) -> None:
        pending = await ask(svc, people)
        await svc.withdraw(pending.id, "client went away")
        r = await c.post(f"/api/v1/approvals/{pending.id}/approve", headers=bearer(auth, "alice"))
        assert r.status_code == 409 and "already withdrawn" in r.json()["detail"]

    run_api(auth, make_service(), withdrawn)


def test_bad_bodies(auth, make_service, people) -> None:
    async def scenario(c: httpx.AsyncClient, svc: ApprovalService) -> None:
        pending = await ask(svc, people)
        url = f"/api/v1/approvals/{pending.id}/approve"
        h = bearer(auth, "alice")
        for content in (b"{", b"[1]", b'"ok"', b'{"reason": 5}', b'{"reason": "a", "x": 1}'):
            r = await c.post(url, headers=h, content=content)
            assert r.status_code == 400, (content, r.text)
        r = await c.post(url, headers=h, json={"reason": "x" * 2001})
        assert r.status_code == 400
        r = await c.post(url, headers=h, content=b" " * 20_000)
        assert r.status_code == 413
        assert svc.get(pending.id).state == "pending"  # type: ignore[union-attr]

    run_api(auth, make_service(), scenario)


def test_who_sees_what(auth, make_service, people) -> None:
    async def scenario(c: httpx.AsyncClient, svc: ApprovalService) -> None:
        mine = await ask(svc, people, "agent-7")
        theirs = await ask(svc, people, "mallory")
        await svc.decide(theirs.id, people["alice"], approve=False, reason="no")

        async def ids(name: str, query: str = "") -> list[str]:
            r = await c.get(f"/api/v1/approvals{query}", headers=bearer(auth, name))
            assert r.status_code == 200, r.text
            return [a["id"] for a in r.json()]

        # approvers see everything, oldest first
        assert await ids("alice") == [mine.id, theirs.id]
        assert await ids("alice", "?state=pending") == [mine.id]
        assert await ids("alice", "?state=denied") == [theirs.id]
        # everyone else: only their own requests
        assert await ids("agent-7") == [mine.id]
        assert await ids("mallory") == [theirs.id]
        # visibility goes by the exact subject: "Mallory" is not "mallory"
        assert await ids("Mallory") == []
        assert await ids("dave-wronggroup") == []
        r = await c.get("/api/v1/approvals?state=maybe", headers=bearer(auth, "alice"))
        assert r.status_code == 400

        r = await c.get(f"/api/v1/approvals/{mine.id}", headers=bearer(auth, "agent-7"))
        assert r.status_code == 200
        body = r.json()
        for key in (
            "id",
            "state",
            "sql",
            "params",
            "requester",
            "target",
            "requested_at",
            "expires_at",
            "deciders",
            "reasons",
        ):
            assert key in body
        assert body["sql"] == "DROP TABLE orders" and body["params"] == ["x"]
        r = await c.get(f"/api/v1/approvals/{mine.id}", headers=bearer(auth, "mallory"))
        assert r.status_code == 404  # not yours: as if it did not exist
        r = await c.get("/api/v1/approvals/apr_nothing", headers=bearer(auth, "alice"))
        assert r.status_code == 404

    run_api(auth, make_service(), scenario)
