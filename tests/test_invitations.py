"""Limits that follow the invitation (issue 12): uses counted on the bus, revocation, a
bounded lifetime, and live-session caps per invitation, per address and with a reserve,
so one link cannot fill the gateway. Pure rules first, then the real gateway on a real
nats-server."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stream import contract, tokens
from stream.admission import AdmissionLimits, LiveCounts, refusal
from stream.client_address import address_key
from stream.gateway import GATEWAY, create_app
from stream.invitations import InvitationRefused, claim_next
from stream.settings import GatewaySettings

KEY = "k" * 32
LIMITS = AdmissionLimits(max_sessions=10, reserved=2, per_invitation=2, per_address=4)


def _invitation(uses: int) -> tokens.Invitation:
    return tokens.Invitation(room="r", expires_at=2e9, issued_at=1e9, nonce="n1", uses=uses)


# ------------------------------------------------------------------------ pure rules


def test_a_use_is_claimed_until_the_invitation_is_used_up_or_revoked():
    record = None
    for expected in (1, 2, 3):
        record = claim_next(record, _invitation(3))
        assert record.used == expected
    with pytest.raises(InvitationRefused, match="already been used 3 times") as info:
        claim_next(record, _invitation(3))
    assert info.value.status == 403
    with pytest.raises(InvitationRefused, match="used once"):
        claim_next(contract.InvitationRecord(used=1), _invitation(1))
    with pytest.raises(InvitationRefused, match="withdrawn"):
        claim_next(contract.InvitationRecord(revoked=True), _invitation(3))


def test_invitation_records_round_trip_and_refuse_garbage():
    record = contract.InvitationRecord(used=2, revoked=True, revoked_at_ms=5.0, reason="leak")
    assert contract.decode_invitation(contract.encode_invitation(record)) == record
    for payload in (b"[]", b"{", b'{"used": "x"}', b'{"v": 99}', b'{"nope": 1}'):
        with pytest.raises(contract.ContractError):
            contract.decode_invitation(payload)


def test_an_invitation_lives_at_most_30_days():
    with pytest.raises(ValueError, match="at most 30 days"):
        tokens.issue(KEY.encode(), "r", 31 * 86400, 0)
    with pytest.raises(ValueError, match="at most 30 days"):
        tokens.issue(KEY.encode(), "r", float("nan"), 0)
    for uses in (0, -1, 1001, True, 2.5):
        with pytest.raises(ValueError, match="1 to 1000"):
            tokens.issue(KEY.encode(), "r", 60, 0, uses=uses)
    # one signed by an older build or a leaked key, for 1e9 hours: refused when presented
    body = tokens._b64(b'{"exp":3600000001000,"iat":1000,"nonce":"ab","room":"r","uses":1,"v":1}')
    forged_long = f"{body}.{tokens._sign(KEY.encode(), body)}"
    with pytest.raises(tokens.TokenError, match="longer than 30 days"):
        tokens.verify(KEY.encode(), forged_long, "r", 2000)
    token, nonce = tokens.issue_with_nonce(KEY.encode(), "r", 30 * 86400, 1000, uses=5)
    invitation = tokens.verify(KEY.encode(), token, "r", 2000)
    assert (invitation.nonce, invitation.uses) == (nonce, 5)


def test_ipv6_clients_are_counted_by_their_64_bit_network():
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff:1:2:3")
    assert address_key("2001:db8:1:2::5") != address_key("2001:db8:1:3::5")
    assert address_key("2001:db8:1:2::5", 128) == "2001:db8:1:2::5/128"
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("203.0.113.9") != address_key("203.0.113.10")


@pytest.mark.parametrize(
    ("counts", "invited", "status"),
    [
        (LiveCounts(total=0, of_invitation=0, of_address=0), True, None),
        (LiveCounts(total=3, of_invitation=2, of_address=2), True, 429),  # this invitation
        (LiveCounts(total=3, of_invitation=5, of_address=2), False, None),  # dev mode: none
        (LiveCounts(total=5, of_invitation=0, of_address=4), True, 429),  # this address
        (LiveCounts(total=8, of_invitation=1, of_address=1), True, 503),  # the reserve...
        (LiveCounts(total=8, of_invitation=0, of_address=1), True, None),  # ...fresh links
        (LiveCounts(total=9, of_invitation=0, of_address=0), True, None),
        (LiveCounts(total=10, of_invitation=0, of_address=0), True, 503),  # full
        (LiveCounts(total=9, of_invitation=0, of_address=0), False, None),  # no reserve
    ],
)
def test_admission(counts, invited, status):
    refused = refusal(LIMITS, counts, invited)
    assert (refused.status if refused else None) == status


def test_the_reserve_must_leave_room():
    with pytest.raises(ValueError, match="reserved_sessions"):
        GatewaySettings(dev_mode=True, max_sessions=4, reserved_sessions=4)


# ------------------------------------------------------------------ the real gateway


def _app(nc, bus_settings, **overrides):
    values = {
        "token_secret": KEY,
        "trusted_proxies": ["127.0.0.1/32", "::1/128"],  # so tests can speak for addresses
        "session_burst": 1000,
        "sessions_per_minute": 1000.0,
    }
    return create_app(GatewaySettings(**(values | overrides)), bus_settings, nc=nc)


async def _create(client, token: str, address: str = "203.0.113.1", room: str = "r"):
    return await client.post(
        "/api/sessions",
        json={"room": room, "token": token},
        headers={"X-Forwarded-For": address},
    )


async def _end_all(client) -> None:
    gateway = client.server.app[GATEWAY]
    for session in list(gateway.sessions.values()):
        await session.close("test over", "candidate")


async def test_a_single_use_invitation_opens_one_session_even_when_raced(nc, bus_settings):
    async with TestClient(TestServer(_app(nc, bus_settings))) as client:
        token = tokens.issue(KEY.encode(), "r", 600, time.time(), uses=1)
        responses = await asyncio.gather(
            *(_create(client, token, f"203.0.113.{i}") for i in range(5))
        )
        statuses = sorted(r.status for r in responses)
        assert statuses == [201, 403, 403, 403, 403], statuses
        refused = [await r.json() for r in responses if r.status == 403]
        assert all("already been used once" in body["error"] for body in refused)
        await _end_all(client)
        # ended or not, a used-up link stays used up
        assert (await _create(client, token)).status == 403


async def test_an_n_use_invitation_and_revocation(nc, bus_settings):
    from deploy.cli import revoke_invitation

    async with TestClient(TestServer(_app(nc, bus_settings))) as client:
        token, nonce = tokens.issue_with_nonce(KEY.encode(), "r", 600, time.time(), uses=3)
        first = await _create(client, token)
        assert first.status == 201
        await _end_all(client)
        assert (await _create(client, token)).status == 201
        await _end_all(client)
        record = await revoke_invitation(nc.jetstream(), bus_settings, nonce, "shared on a forum")
        assert record.revoked and record.used == 2
        response = await _create(client, token)
        assert response.status == 403
        assert "withdrawn" in (await response.json())["error"]
        gateway = client.server.app[GATEWAY]
        assert gateway.sessions == {}


async def test_one_invitation_from_many_addresses_cannot_fill_the_gateway(nc, bus_settings):
    app = _app(nc, bus_settings, max_sessions=8, reserved_sessions=2)
    async with TestClient(TestServer(app)) as client:
        greedy = tokens.issue(KEY.encode(), "r", 600, time.time(), uses=1000)
        statuses = [(await _create(client, greedy, f"198.51.100.{i}")).status for i in range(2, 40)]
        assert statuses.count(201) == 2  # the per-invitation cap, whatever the address
        assert set(statuses[2:]) == {429}
        # ...and the uses it was refused did not count: 2 of 1000 are spent
        gateway = app[GATEWAY]
        nonce = tokens.verify(KEY.encode(), greedy, "r", time.time()).nonce
        assert (await gateway.ledger.record(nonce)).used == 2
        # other candidates with their own links still get in, up to the reserve...
        others = [tokens.issue(KEY.encode(), "r", 600, time.time(), uses=5) for _ in range(6)]
        for i, token in enumerate(others[:4]):
            assert (await _create(client, token, f"192.0.2.{i}")).status == 201
        assert len(gateway.sessions) == 6
        # ...where a link that already has a live session waits, and a fresh one gets in
        response = await _create(client, others[0], "192.0.2.50")
        assert response.status == 503 and "nearly full" in (await response.json())["error"]
        for i, token in enumerate(others[4:]):
            assert (await _create(client, token, f"192.0.2.{60 + i}")).status == 201
        assert (await _create(client, others[1], "192.0.2.70")).status == 503  # full
        await _end_all(client)


async def test_one_ipv6_host_counts_as_one_address(nc, bus_settings):
    app = _app(nc, bus_settings, max_sessions_per_address=3, dev_mode=True, token_secret=None)
    async with TestClient(TestServer(app)) as client:
        statuses = []
        for i in range(6):  # six addresses of one /64 (one host's privacy addresses)
            response = await client.post(
                "/api/sessions", json={}, headers={"X-Forwarded-For": f"2001:db8:7:7::{i + 1}"}
            )
            statuses.append(response.status)
        assert statuses == [201, 201, 201, 429, 429, 429]
        other_net = await client.post(
            "/api/sessions", json={}, headers={"X-Forwarded-For": "2001:db8:7:8::1"}
        )
        assert other_net.status == 201
        await _end_all(client)


async def test_the_invitation_is_checked_before_the_address_rate_limit(nc, bus_settings):
    # a flood of requests without a valid token must not use up a real candidate's bucket
    app = _app(nc, bus_settings, session_burst=2, sessions_per_minute=1.0)
    async with TestClient(TestServer(app)) as client:
        for _ in range(20):
            assert (await _create(client, "forged.token", "203.0.113.77")).status == 401
        token = tokens.issue(KEY.encode(), "r", 600, time.time(), uses=2)
        assert (await _create(client, token, "203.0.113.77")).status == 201
        await _end_all(client)


def test_invite_signs_with_the_key_up_made_when_none_is_configured(tmp_path):
    """The banner of `intervue up` says "more with `intervue invite ROOM`": that must work
    as it is, in another terminal, with no key configured."""
    import time

    from deploy.up import INVITATION_KEY_FILE, ensure_signing_key
    from stream import tokens
    from tests._cli import run_cli

    nothing = run_cli({"INTERVUE_UP_DATA_DIR": str(tmp_path)}, "invite", "demo")
    assert nothing.returncode == 2 and "signing key" in nothing.stderr
    key = ensure_signing_key(tmp_path / INVITATION_KEY_FILE).read_bytes().strip()
    done = run_cli({"INTERVUE_UP_DATA_DIR": str(tmp_path)}, "invite", "demo", "--uses", "4")
    assert done.returncode == 0, done.stderr
    _, room, token = tokens.split_invite_url(done.stdout.strip())
    assert room == "demo" and tokens.verify(key, token, room, time.time()).uses == 4
