"""The dashboard's login limiter (dashboard/login_limit.py): lockouts with exponential
backoff per account and per client address, a global ceiling, no password checked while
locked; a fake clock drives it."""

from __future__ import annotations

import logging
import threading

import pytest

from dashboard import login_limit
from dashboard.login_limit import LoginLimiter, LoginPolicy

PASSWORD = "right"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Checker:
    """A password check that counts how often it ran."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, password: str):
        def verify() -> bool:
            self.calls += 1
            return password == PASSWORD

        return verify


POLICY = LoginPolicy(
    max_failures=3,
    lockout_s=10.0,
    max_lockout_s=35.0,
    forget_after_s=100.0,
    global_max_failures=1000,
    global_window_s=60.0,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(limiter: LoginLimiter, times: int, account="interviewer", address="10.0.0.1"):
    check = Checker()
    return [limiter.attempt(account, address, check("wrong")) for _ in range(times)]


def test_the_nth_failure_locks_and_even_the_right_password_is_refused_unchecked(clock):
    limiter = LoginLimiter(POLICY, clock)
    outcomes = fail(limiter, 3)
    assert [o.checked for o in outcomes] == [True, True, True]
    assert [o.retry_after_s for o in outcomes] == [0.0, 0.0, 10.0]
    check = Checker()
    clock.now += 9.0
    refused = limiter.attempt("interviewer", "10.0.0.1", check(PASSWORD))
    assert (refused.ok, refused.checked, refused.refused) == (False, False, True)
    assert refused.retry_after_s == pytest.approx(1.0)
    assert check.calls == 0  # the password was not even looked at
    clock.now += 1.0
    assert limiter.attempt("interviewer", "10.0.0.1", check(PASSWORD)).ok
    assert check.calls == 1


def test_the_account_is_locked_from_every_address_and_the_address_for_every_account(clock):
    limiter = LoginLimiter(POLICY, clock)
    fail(limiter, 3, account="interviewer", address="10.0.0.1")
    elsewhere = limiter.attempt("Interviewer ", "10.0.0.2", Checker()(PASSWORD))
    assert elsewhere.refused and elsewhere.scope == "account"  # case and spaces do not help
    # the address is locked too, whatever name it tries next
    other_name = limiter.attempt("admin", "10.0.0.1", Checker()(PASSWORD))
    assert other_name.refused and other_name.scope in ("account", "address")
    assert limiter.locked_for("admin", "10.0.0.1")[0] == "address"
    assert limiter.locked_for("admin", "10.0.0.9") is None


def test_one_address_spraying_user_names_is_locked_by_its_address(clock):
    limiter = LoginLimiter(POLICY, clock)
    outcomes = [limiter.attempt(f"user{i}", "10.0.0.7", Checker()("x")) for i in range(4)]
    assert [o.checked for o in outcomes] == [True, True, True, False]
    assert outcomes[2].scope == "address" and outcomes[3].scope == "address"


def test_lockouts_double_up_to_the_cap_and_are_forgotten_after_a_quiet_while(clock):
    limiter = LoginLimiter(POLICY, clock)
    durations = []
    for _ in range(4):
        started = fail(limiter, 3)[-1]
        durations.append(started.retry_after_s)
        clock.now += started.retry_after_s
    assert durations == [10.0, 20.0, 35.0, 35.0]  # 10, 20, then the 35 s cap
    clock.now += 100.0  # quiet for forget_after_s: the backoff starts over
    assert fail(limiter, 3)[-1].retry_after_s == 10.0


def test_a_success_clears_the_address_but_not_the_accounts_backoff(clock):
    limiter = LoginLimiter(POLICY, clock)
    clock.now += fail(limiter, 3, address="10.0.0.1")[-1].retry_after_s
    assert limiter.attempt("interviewer", "10.0.0.1", Checker()(PASSWORD)).ok
    assert limiter.locked_for("interviewer", "10.0.0.1") is None
    # two more failures do not lock (the count restarted); the third locks for 20 s: the
    # account's backoff level survived the success
    outcomes = fail(limiter, 3, address="10.0.0.2")
    assert [o.retry_after_s for o in outcomes] == [0.0, 0.0, 20.0]


def test_the_global_ceiling_pauses_everyone_until_the_window_has_room(clock):
    policy = LoginPolicy(max_failures=100, global_max_failures=5, global_window_s=60.0)
    limiter = LoginLimiter(policy, clock)
    outcomes = []
    for i in range(5):
        outcomes.append(limiter.attempt(f"u{i}", f"10.0.1.{i}", Checker()("x")))
        clock.now += 1.0
    assert outcomes[-1].scope == "global" and outcomes[-1].retry_after_s == pytest.approx(56.0)
    check = Checker()
    paused = limiter.attempt("interviewer", "192.0.2.1", check(PASSWORD))
    assert paused.refused and paused.scope == "global"
    assert paused.retry_after_s == pytest.approx(55.0) and check.calls == 0
    clock.now += 55.0  # the oldest failure left the window
    assert limiter.attempt("interviewer", "192.0.2.1", check(PASSWORD)).ok


def test_memory_stays_bounded_under_many_names(clock):
    policy = LoginPolicy(max_failures=3, max_tracked=50, global_max_failures=10**6)
    limiter = LoginLimiter(policy, clock)
    for i in range(500):
        limiter.attempt(f"name{i}", f"10.1.{i // 250}.{i % 250}", Checker()("x"))
    assert limiter.tracked() <= 50


def test_parallel_attempts_cannot_race_past_the_count(clock):
    limiter = LoginLimiter(POLICY, clock)
    results = []
    gate = threading.Barrier(20)

    def one() -> None:
        gate.wait()
        results.append(limiter.attempt("interviewer", "10.0.0.1", Checker()("x")))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for r in results if r.checked) == POLICY.max_failures


def test_failures_and_lockouts_are_logged_without_the_password(clock, caplog):
    limiter = LoginLimiter(POLICY, clock)
    secret = "hunter2-typo"
    with caplog.at_level(logging.WARNING, logger="dashboard.login_limit"):
        for _ in range(4):
            limiter.attempt("interviewer", "10.0.0.1", Checker()(secret))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("login failed" in m for m in messages) == 3
    assert any("locked for 10 s: account 'interviewer'" in m for m in messages)
    assert any("locked for 10 s: address '10.0.0.1'" in m for m in messages)
    assert any("refused without checking the password" in m for m in messages)
    assert not any(secret in m for m in messages)


def test_the_shared_limiter_is_one_per_policy_for_the_whole_process():
    login_limit.forget_shared_limiters()
    try:
        first = login_limit.shared_limiter(POLICY)
        assert login_limit.shared_limiter(LoginPolicy(**vars(POLICY))) is first
        assert login_limit.shared_limiter(LoginPolicy(max_failures=9)) is not first
    finally:
        login_limit.forget_shared_limiters()


@pytest.mark.parametrize(
    ("seconds", "words"), [(0.2, "1 s"), (42.0, "42 s"), (60.0, "1 min"), (185.5, "3 min 6 s")]
)
def test_wait_words(seconds, words):
    assert login_limit.wait_words(seconds) == words
