"""Separation of duties, explored: no sequence of admin calls lets any principal obtain a permission it does not hold.

A hypothesis state machine drives the real governance service (SQLite, keys, policy) with
every built-in role and a team-scoped manager as actors. Each actor holds the keys it was
given or minted; after every step, what those keys can do together must stay within what the
actor could do at the start, and no team-scoped actor may have loosened a limit a global one set.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from seekstack.config import Settings, check_settings
from seekstack.errors import SeekstackError
from seekstack.governance import Governance
from seekstack.governance.policy import BUILTIN_ROLES, DUTIES, Policy, Role, expand, mixed_duties
from seekstack.governance.store import LIMIT_FIELDS

TEAM_LEAD = {"permissions": ["keys:manage", "users:manage", "quotas:manage", "inference:*", "models:read"],
             "scope": "team"}
ACTORS = [*BUILTIN_ROLES, "team_lead"]
ROLE_CHOICES = [None, "least", *ACTORS]


class Escalation(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        import tempfile

        self.tmp = tempfile.TemporaryDirectory()
        self.gov = Governance(Settings(state_dir=self.tmp.name, roles={"team_lead": TEAM_LEAD}))
        store = self.gov.store
        store.create_team("default")
        store.create_team("other")
        self.held: dict[str, list[str]] = {}  # in the order they came: draws stay reproducible
        self.start: dict[str, tuple[frozenset[str], int]] = {}
        for role in ACTORS:
            store.create_user(f"u-{role}", "default", role)
            _, key = self.gov._mint(f"u-{role}", "start", ["*"], ["*"], None)
            self.held[role] = [key]
            granted = self.gov.policy.role(role)
            self.start[role] = (granted.granted, granted.rank)
        self.users = [f"u-{r}" for r in ACTORS]
        self.global_limits: dict[tuple[str, str], dict] = {}

    def teardown(self):
        if hasattr(self, "gov"):
            asyncio.run(self.gov.aclose())
            self.tmp.cleanup()

    def principal(self, actor: str, data):
        key = data.draw(st.sampled_from(self.held[actor]))
        try:
            return self.gov.auth.authenticate(f"Bearer {key}")
        except SeekstackError:
            return None

    @rule(actor=st.sampled_from(ACTORS), role=st.sampled_from(ACTORS), team=st.sampled_from(["default", "other"]),
          data=st.data())
    def create_user(self, actor, role, team, data):
        caller = self.principal(actor, data)
        if caller is None:
            return
        name = f"n{len(self.users)}"
        try:
            self.gov.create_user(caller, name=name, team=team, role=role)
        except SeekstackError:
            return
        self.users.append(name)

    @rule(actor=st.sampled_from(ACTORS), role=st.sampled_from(ROLE_CHOICES), data=st.data())
    def create_key(self, actor, role, data):
        caller = self.principal(actor, data)
        if caller is None:
            return
        user = data.draw(st.sampled_from([None, *self.users]))
        try:
            _, key = self.gov.create_key(caller, user=user, name="k", models=["*"], endpoints=["*"],
                                         expires_in_days=None, role=role)
        except SeekstackError:
            return
        self.held[actor].append(key)  # the minter saw the secret: it can use the key from now on

    @rule(actor=st.sampled_from(ACTORS), field=st.sampled_from(LIMIT_FIELDS),
          value=st.one_of(st.none(), st.integers(0, 100)), data=st.data())
    def set_limit(self, actor, field, value, data):
        caller = self.principal(actor, data)
        if caller is None:
            return
        user = data.draw(st.sampled_from(self.users))
        before = self.gov.store.limit("user", user)
        try:
            self.gov.set_limits(caller, "user", user, {field: value})
        except SeekstackError:
            return
        if before is not None and before["imposed_rank"] == 2 and caller.role.rank < 2:
            loosened = any(before[f] is not None and ({field: value}.get(f) is None or {field: value}[f] > before[f])
                           for f in LIMIT_FIELDS)
            assert not loosened, f"{actor} lifted a limit a global role imposed: {before} -> {field}={value}"

    @invariant()
    def nobody_gains_a_permission(self):
        if not hasattr(self, "gov"):
            return
        for actor, keys in self.held.items():
            granted, rank = self.start[actor]
            for key in keys:
                try:
                    principal = self.gov.auth.authenticate(f"Bearer {key}")
                except SeekstackError:
                    continue
                assert principal.role.granted <= granted, \
                    f"{actor} gained {sorted(principal.role.granted - granted)} through a {principal.role.name} key"
                assert principal.role.rank <= rank, f"{actor} gained global reach"


TestEscalation = Escalation.TestCase
TestEscalation.settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                                   suppress_health_check=list(HealthCheck))


def test_the_audit_duty_stands_alone_in_every_built_in_role_and_custom_roles_cannot_mix_it():
    for role in BUILTIN_ROLES.values():
        assert mixed_duties(role) is None, role.name
    problems = check_settings(Settings(roles={"auditing_keymaster": {"permissions": ["audit:read", "keys:manage"]}}))
    assert any("audit and security duties" in p for p in problems)
    assert DUTIES["audit"] == {"audit:read"}


def test_the_findings_each_refused(tmp_path):
    """The sequences that broke separation of duties before, one by one."""
    gov = Governance(Settings(state_dir=tmp_path, roles={"team_lead": TEAM_LEAD}))
    try:
        system = gov.auth.authenticate(f"Bearer {gov.bootstrap()}")
        sec = gov.auth.authenticate("Bearer " + (tmp_path / "security-admin.key").read_text().strip())
        gov.store.create_user("aud", "default", "auditor")
        gov.store.create_user("lead", "default", "team_lead")
        # an admin mints a key for the auditor's user; so does the security admin
        with pytest.raises(SeekstackError, match="own user only"):
            gov.create_key(system, user="aud", name="x", models=[], endpoints=[], expires_in_days=None)
        with pytest.raises(SeekstackError, match="audit:read"):
            gov.create_key(sec, user="aud", name="x", models=[], endpoints=[], expires_in_days=None)
        # a security_admin creates an admin user (and would then mint its key)
        with pytest.raises(SeekstackError, match="nobody gives a role they do not hold"):
            gov.create_user(sec, name="evil", team="default", role="admin")
        # a team lead lifts a limit a global security admin imposed
        admin = sec
        gov.set_limits(admin, "user", "lead", {"rpm": 5})
        lead = gov.auth.authenticate(f"Bearer {gov._mint('lead', 'l', ['*'], ['*'], None)[1]}")
        with pytest.raises(SeekstackError, match="imposed by a global role"):
            gov.set_limits(lead, "user", "lead", {"rpm": None})
        gov.set_limits(lead, "user", "lead", {"rpm": 3})  # tightening is fine …
        with pytest.raises(SeekstackError, match="imposed by a global role"):
            gov.set_limits(lead, "user", "lead", {"rpm": 5})  # … and does not hand the limit over
        # `keys create` with no options: the least-privileged role the caller holds, not admin
        record, _ = gov.create_key(system, user=None, name="cli", models=[], endpoints=[], expires_in_days=None,
                                   role="least")
        assert record.role == "api_consumer"
        # a lesser key cannot mint a greater one for its own user
        _, small_key = gov.create_key(system, user=None, name="s", models=[], endpoints=[], expires_in_days=None,
                                      role="model_operator")
        small = gov.auth.authenticate(f"Bearer {small_key}")
        with pytest.raises(SeekstackError, match="config:manage"):
            gov.create_key(small, user=None, name="up", models=[], endpoints=[], expires_in_days=None)
    finally:
        asyncio.run(gov.aclose())
