//! Tests of the auth store rules, error texts and revision bumps (etcd 3.5 behaviour,
//! spot-checked against a real etcd 3.4.23 where the two agree).

use super::*;
use crate::etcd::proto::authpb;
use crate::etcd::proto::etcdserverpb as pb;
use crate::etcd::proto::rustcdpb::AuthSnapshot;

const COST: u32 = 4;

type R<T = ()> = Result<T, AuthError>;

fn add_user(s: &mut AuthStore, name: &str, pw: &str) -> R {
    let hashed = hash_password(pw, COST)?;
    s.user_add(
        &pb::AuthUserAddRequest {
            name: name.into(),
            hashed_password: hashed,
            ..Default::default()
        },
        COST,
    )?;
    Ok(())
}

fn add_role(s: &mut AuthStore, name: &str) -> R {
    s.role_add(&pb::AuthRoleAddRequest { name: name.into() })?;
    Ok(())
}

fn grant_role(s: &mut AuthStore, user: &str, role: &str) -> R {
    s.user_grant_role(&pb::AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })?;
    Ok(())
}

fn grant_perm(s: &mut AuthStore, role: &str, t: PermType, key: &[u8], end: &[u8]) -> R {
    s.role_grant_permission(&pb::AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(perm(t, key, end)),
    })?;
    Ok(())
}

fn perm(t: PermType, key: &[u8], end: &[u8]) -> authpb::Permission {
    authpb::Permission {
        perm_type: t as i32,
        key: key.to_vec(),
        range_end: end.to_vec(),
    }
}

/// root:rootpw with the root role (role "root" not created), auth enabled.
fn enabled_store() -> R<AuthStore> {
    let mut s = AuthStore::new();
    add_user(&mut s, "root", "rootpw")?;
    grant_role(&mut s, "root", "root")?;
    s.enable()?;
    Ok(s)
}

#[test]
fn new_store_is_disabled_at_revision_1() {
    let s = AuthStore::new();
    assert_eq!(s.status(), (false, 1));
    let st = s.auth_status();
    assert!(!st.enabled);
    assert_eq!(st.auth_revision, 1);
    assert!(st.header.is_none());
}

#[test]
fn enable_requires_root_user_with_root_role() -> R {
    let mut s = AuthStore::new();
    assert_eq!(s.enable(), Err(AuthError::RootUserNotExist));
    add_user(&mut s, "root", "x")?;
    assert_eq!(s.enable(), Err(AuthError::RootRoleNotExist));
    assert!(!s.is_enabled());
    // The root role may be granted without existing as a role.
    grant_role(&mut s, "root", "root")?;
    let rev = s.revision();
    s.enable()?;
    assert!(s.is_enabled());
    assert_eq!(s.revision(), rev, "enable does not bump the revision");
    s.enable()?; // idempotent
    assert_eq!(s.revision(), rev);
    s.disable();
    assert_eq!(s.status(), (false, rev + 1), "disable bumps");
    s.disable();
    assert_eq!(s.revision(), rev + 1, "disabling twice is a no-op");
    Ok(())
}

#[test]
fn user_add_rules() -> R {
    let mut s = AuthStore::new();
    let empty = pb::AuthUserAddRequest::default();
    assert_eq!(s.user_add(&empty, COST), Err(AuthError::UserEmpty));
    add_user(&mut s, "alice", "pw")?;
    assert_eq!(s.revision(), 2);
    assert_eq!(
        add_user(&mut s, "alice", "other"),
        Err(AuthError::UserAlreadyExist)
    );
    assert_eq!(s.revision(), 2, "failed applies do not bump");
    // Bad base64 in hashedPassword: etcd answers ErrNoPasswordUser.
    let bad = pb::AuthUserAddRequest {
        name: "bob".into(),
        hashed_password: "not base64!".into(),
        ..Default::default()
    };
    assert_eq!(s.user_add(&bad, COST), Err(AuthError::NoPasswordUser));
    assert!(s
        .user_get(&pb::AuthUserGetRequest { name: "bob".into() })
        .is_err());
    Ok(())
}

#[test]
fn passwords_hashed_by_proposer_or_legacy_plain() -> R {
    let mut s = AuthStore::new();
    add_user(&mut s, "root", "rootpw")?;
    grant_role(&mut s, "root", "root")?;
    // Pre-3.5 proposal: plain password, hashed at apply time.
    s.user_add(
        &pb::AuthUserAddRequest {
            name: "legacy".into(),
            password: "old".into(),
            ..Default::default()
        },
        COST,
    )?;
    assert_eq!(
        s.check_password("root", "rootpw"),
        Err(AuthError::AuthNotEnabled)
    );
    s.enable()?;
    let rev = s.revision();
    assert_eq!(s.check_password("root", "rootpw"), Ok(rev));
    assert_eq!(
        s.check_password("root", "wrong"),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(s.check_password("nobody", "x"), Err(AuthError::AuthFailed));
    assert_eq!(s.check_password("legacy", "old"), Ok(rev));
    // An empty hashedPassword stores an empty hash that never verifies.
    s.user_add(
        &pb::AuthUserAddRequest {
            name: "nohash".into(),
            ..Default::default()
        },
        COST,
    )?;
    assert_eq!(s.check_password("nohash", ""), Err(AuthError::AuthFailed));
    Ok(())
}

#[test]
fn no_password_users() -> R {
    let mut s = enabled_store()?;
    s.user_add(
        &pb::AuthUserAddRequest {
            name: "np".into(),
            password: "ignored".into(),
            options: Some(authpb::UserAddOptions { no_password: true }),
            ..Default::default()
        },
        COST,
    )?;
    // Checked against etcd 3.4.23: code Unknown with the internal text.
    let err = s.check_password("np", "x");
    assert_eq!(err, Err(AuthError::NoPasswordUser));
    assert_eq!(AuthError::NoPasswordUser.grpc_status_code(), 2);
    assert_eq!(s.authenticate("np"), Err(AuthError::AuthFailed));
    // Changing the password of a no-password user keeps it password-less.
    let hashed = hash_password("new", COST)?;
    s.user_change_password(
        &pb::AuthUserChangePasswordRequest {
            name: "np".into(),
            hashed_password: hashed,
            ..Default::default()
        },
        COST,
    )?;
    assert_eq!(
        s.check_password("np", "new"),
        Err(AuthError::NoPasswordUser)
    );
    let snap = s.to_snapshot();
    let np = snap.users.iter().find(|u| u.name == b"np");
    assert_eq!(np.map(|u| u.password.is_empty()), Some(true));
    Ok(())
}

#[test]
fn authenticate_apply_checks() -> R {
    let mut s = AuthStore::new();
    add_user(&mut s, "root", "x")?;
    grant_role(&mut s, "root", "root")?;
    assert_eq!(s.authenticate("root"), Err(AuthError::AuthNotEnabled));
    s.enable()?;
    assert_eq!(s.authenticate("root"), Ok(()));
    assert_eq!(s.authenticate("ghost"), Err(AuthError::AuthFailed));
    Ok(())
}

#[test]
fn change_password() -> R {
    let mut s = enabled_store()?;
    add_user(&mut s, "alice", "one")?;
    let rev = s.revision();
    let req = |name: &str, pw: &str| -> R<pb::AuthUserChangePasswordRequest> {
        Ok(pb::AuthUserChangePasswordRequest {
            name: name.into(),
            hashed_password: hash_password(pw, COST)?,
            ..Default::default()
        })
    };
    assert_eq!(
        s.user_change_password(&req("ghost", "x")?, COST),
        Err(AuthError::UserNotFound)
    );
    s.user_change_password(&req("alice", "two")?, COST)?;
    assert_eq!(s.revision(), rev + 1);
    assert_eq!(s.check_password("alice", "one"), Err(AuthError::AuthFailed));
    assert_eq!(s.check_password("alice", "two"), Ok(rev + 1));
    Ok(())
}

#[test]
fn user_delete_rules() -> R {
    let mut s = AuthStore::new();
    add_user(&mut s, "root", "x")?;
    let del = |n: &str| pb::AuthUserDeleteRequest { name: n.into() };
    assert_eq!(s.user_delete(&del("ghost")), Err(AuthError::UserNotFound));
    // While disabled, root may be deleted.
    s.user_delete(&del("root"))?;
    let mut s = enabled_store()?;
    let rev = s.revision();
    assert_eq!(s.user_delete(&del("root")), Err(AuthError::InvalidAuthMgmt));
    add_user(&mut s, "alice", "pw")?;
    s.user_delete(&del("alice"))?;
    assert_eq!(s.revision(), rev + 2);
    assert_eq!(
        s.user_get(&pb::AuthUserGetRequest {
            name: "alice".into()
        }),
        Err(AuthError::UserNotFound)
    );
    Ok(())
}

#[test]
fn grant_and_revoke_roles() -> R {
    let mut s = enabled_store()?;
    add_user(&mut s, "alice", "pw")?;
    add_role(&mut s, "b")?;
    add_role(&mut s, "a")?;
    // User is looked up before the role.
    assert_eq!(
        grant_role(&mut s, "ghost", "nosuch"),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        grant_role(&mut s, "alice", "nosuch"),
        Err(AuthError::RoleNotFound)
    );
    grant_role(&mut s, "alice", "b")?;
    grant_role(&mut s, "alice", "a")?;
    let rev = s.revision();
    grant_role(&mut s, "alice", "a")?; // already granted: success, no change
    assert_eq!(s.revision(), rev);
    let get = s.user_get(&pb::AuthUserGetRequest {
        name: "alice".into(),
    })?;
    assert_eq!(get.roles, vec!["a".to_string(), "b".to_string()], "sorted");

    let revoke = |n: &str, r: &str| pb::AuthUserRevokeRoleRequest {
        name: n.into(),
        role: r.into(),
    };
    assert_eq!(
        s.user_revoke_role(&revoke("alice", "nosuch")),
        Err(AuthError::RoleNotGranted)
    );
    assert_eq!(
        s.user_revoke_role(&revoke("ghost", "a")),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        s.user_revoke_role(&revoke("root", "root")),
        Err(AuthError::InvalidAuthMgmt)
    );
    s.user_revoke_role(&revoke("alice", "a"))?;
    assert_eq!(s.revision(), rev + 1);
    assert!(!s.has_role("alice", "a"));
    assert!(s.has_role("alice", "b"));
    // While disabled, root may lose its root role.
    s.disable();
    s.user_revoke_role(&revoke("root", "root"))?;
    assert!(!s.is_admin("root"));
    Ok(())
}

#[test]
fn role_add_delete_get_list() -> R {
    let mut s = enabled_store()?;
    assert_eq!(add_role(&mut s, ""), Err(AuthError::RoleEmpty));
    add_role(&mut s, "r2")?;
    add_role(&mut s, "r1")?;
    assert_eq!(add_role(&mut s, "r1"), Err(AuthError::RoleAlreadyExist));
    assert_eq!(
        s.role_list().roles,
        vec!["r1".to_string(), "r2".to_string()]
    );
    add_user(&mut s, "bob", "pw")?;
    add_user(&mut s, "alice", "pw")?;
    assert_eq!(
        s.user_list().users,
        vec!["alice".to_string(), "bob".to_string(), "root".to_string()]
    );
    grant_role(&mut s, "alice", "r1")?;
    grant_role(&mut s, "bob", "r1")?;
    grant_role(&mut s, "bob", "r2")?;
    let rev = s.revision();
    let del = |r: &str| pb::AuthRoleDeleteRequest { role: r.into() };
    assert_eq!(s.role_delete(&del("nosuch")), Err(AuthError::RoleNotFound));
    s.role_delete(&del("r1"))?;
    assert_eq!(
        s.revision(),
        rev + 1,
        "one bump for the role and its revocations"
    );
    assert!(!s.has_role("alice", "r1"));
    assert_eq!(
        s.user_get(&pb::AuthUserGetRequest { name: "bob".into() })?
            .roles,
        vec!["r2".to_string()]
    );
    let get = |r: &str| pb::AuthRoleGetRequest { role: r.into() };
    assert_eq!(s.role_get(&get("r1")), Err(AuthError::RoleNotFound));
    // The root role: can't be deleted while enabled; reports the synthetic permission.
    // The enabled check comes before the existence check, as in etcd.
    assert_eq!(s.role_delete(&del("root")), Err(AuthError::InvalidAuthMgmt));
    add_role(&mut s, "root")?;
    assert_eq!(s.role_delete(&del("root")), Err(AuthError::InvalidAuthMgmt));
    assert_eq!(
        s.role_get(&get("root"))?.perm,
        vec![perm(PermType::Readwrite, b"", b"\0")]
    );
    s.disable();
    s.role_delete(&del("root"))?;
    assert!(
        !s.is_admin("root"),
        "deleting the role revokes it from root"
    );
    Ok(())
}

#[test]
fn grant_and_revoke_permissions() -> R {
    let mut s = enabled_store()?;
    add_role(&mut s, "r")?;
    let no_perm = pb::AuthRoleGrantPermissionRequest {
        name: "r".into(),
        perm: None,
    };
    assert_eq!(
        s.role_grant_permission(&no_perm),
        Err(AuthError::PermissionNotGiven)
    );
    // Range validity is checked before the role lookup.
    for (k, e) in [(&b""[..], &b""[..]), (b"c", b"a"), (b"a", b"a")] {
        assert_eq!(
            grant_perm(&mut s, "nosuch", PermType::Read, k, e),
            Err(AuthError::InvalidAuthMgmt)
        );
    }
    assert_eq!(
        grant_perm(&mut s, "nosuch", PermType::Read, b"a", b""),
        Err(AuthError::RoleNotFound)
    );
    grant_perm(&mut s, "r", PermType::Read, b"x", b"\0")?;
    grant_perm(&mut s, "r", PermType::Read, b"a", b"c")?;
    grant_perm(&mut s, "r", PermType::Write, b"c", b"")?;
    let rev = s.revision();
    grant_perm(&mut s, "r", PermType::Readwrite, b"a", b"c")?; // update in place
    assert_eq!(s.revision(), rev + 1, "updating bumps too");
    let got = s
        .role_get(&pb::AuthRoleGetRequest { role: "r".into() })?
        .perm;
    assert_eq!(
        got,
        vec![
            perm(PermType::Readwrite, b"a", b"c"),
            perm(PermType::Write, b"c", b""),
            perm(PermType::Read, b"x", b"\0"),
        ],
        "sorted by key"
    );
    let revoke = |r: &str, k: &[u8], e: &[u8]| pb::AuthRoleRevokePermissionRequest {
        role: r.into(),
        key: k.to_vec(),
        range_end: e.to_vec(),
    };
    assert_eq!(
        s.role_revoke_permission(&revoke("nosuch", b"a", b"c")),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(
        s.role_revoke_permission(&revoke("r", b"a", b"")),
        Err(AuthError::PermissionNotGranted),
        "key and range end must both match"
    );
    s.role_revoke_permission(&revoke("r", b"a", b"c"))?;
    assert_eq!(s.revision(), rev + 2);
    let got = s
        .role_get(&pb::AuthRoleGetRequest { role: "r".into() })?
        .perm;
    assert_eq!(got.len(), 2);
    Ok(())
}

#[test]
fn range_checks() -> R {
    let mut s = AuthStore::new();
    add_user(&mut s, "root", "x")?;
    grant_role(&mut s, "root", "root")?;
    add_user(&mut s, "u", "pw")?;
    add_role(&mut s, "r")?;
    grant_role(&mut s, "u", "r")?;
    grant_perm(&mut s, "r", PermType::Read, b"a", b"c")?;
    grant_perm(&mut s, "r", PermType::Write, b"c", b"")?;
    // Disabled: everything is allowed, even without a user.
    assert_eq!(s.check_range("", b"zzz", b"", PermType::Write), Ok(()));
    s.enable()?;
    assert_eq!(
        s.check_range("", b"a", b"", PermType::Read),
        Err(AuthError::UserEmpty)
    );
    assert_eq!(
        s.check_range("ghost", b"a", b"", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(s.check_range("root", b"\0", b"\0", PermType::Write), Ok(()));
    assert_eq!(s.check_range("u", b"a", b"c", PermType::Read), Ok(()));
    assert_eq!(
        s.check_range("u", b"a", b"d", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(s.check_range("u", b"c", b"", PermType::Write), Ok(()));
    assert_eq!(
        s.check_range("u", b"b", b"", PermType::Write),
        Err(AuthError::PermissionDenied)
    );
    // Permission changes take effect immediately.
    grant_perm(&mut s, "r", PermType::Write, b"b", b"")?;
    assert_eq!(s.check_range("u", b"b", b"", PermType::Write), Ok(()));
    s.user_revoke_role(&pb::AuthUserRevokeRoleRequest {
        name: "u".into(),
        role: "r".into(),
    })?;
    assert_eq!(
        s.check_range("u", b"b", b"", PermType::Write),
        Err(AuthError::PermissionDenied)
    );
    // Any user holding the root role may do anything.
    grant_role(&mut s, "u", "root")?;
    assert_eq!(
        s.check_range("u", b"zz", b"\0", PermType::Readwrite),
        Ok(())
    );
    Ok(())
}

#[test]
fn admin_and_self_service_checks() -> R {
    let mut s = AuthStore::new();
    assert_eq!(s.check_admin(""), Ok(()), "disabled: everyone is admin");
    add_user(&mut s, "root", "x")?;
    grant_role(&mut s, "root", "root")?;
    add_user(&mut s, "u", "pw")?;
    add_role(&mut s, "r")?;
    add_role(&mut s, "other")?;
    grant_role(&mut s, "u", "r")?;
    s.enable()?;
    assert!(s.is_admin("root"));
    assert!(!s.is_admin("u"));
    assert!(!s.is_admin("ghost"));
    assert_eq!(s.check_admin("root"), Ok(()));
    assert_eq!(s.check_admin(""), Err(AuthError::UserEmpty));
    assert_eq!(s.check_admin("ghost"), Err(AuthError::UserNotFound));
    assert_eq!(s.check_admin("u"), Err(AuthError::PermissionDenied));
    // Checked against etcd 3.4.23: `user get u1` as u1 works, `user list` does not.
    assert_eq!(s.check_user_get("u", "u"), Ok(()));
    assert_eq!(
        s.check_user_get("u", "root"),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(s.check_user_get("root", "u"), Ok(()));
    assert_eq!(s.check_role_get("u", "r"), Ok(()));
    assert_eq!(
        s.check_role_get("u", "other"),
        Err(AuthError::PermissionDenied)
    );
    Ok(())
}

#[test]
fn revision_checks() -> R {
    let mut s = enabled_store()?;
    let rev = s.revision();
    assert_eq!(s.check_revision(0), Err(AuthError::UserEmpty));
    assert_eq!(s.check_revision(rev), Ok(()));
    add_role(&mut s, "r")?;
    assert_eq!(s.check_revision(rev), Err(AuthError::AuthOldRevision));
    assert_eq!(s.check_revision(rev + 1), Ok(()));
    s.disable();
    assert_eq!(s.check_revision(0), Ok(()));
    Ok(())
}

#[test]
fn every_successful_mutation_bumps_once() -> R {
    let mut s = AuthStore::new();
    let mut expect = 1;
    let mut step = |s: &AuthStore, bumps: u64, what: &str| {
        expect += bumps;
        assert_eq!(s.revision(), expect, "{what}");
    };
    add_user(&mut s, "root", "x")?;
    step(&s, 1, "user_add");
    grant_role(&mut s, "root", "root")?;
    step(&s, 1, "user_grant_role");
    add_role(&mut s, "r")?;
    step(&s, 1, "role_add");
    grant_perm(&mut s, "r", PermType::Read, b"a", b"")?;
    step(&s, 1, "role_grant_permission");
    s.role_revoke_permission(&pb::AuthRoleRevokePermissionRequest {
        role: "r".into(),
        key: b"a".to_vec(),
        range_end: vec![],
    })?;
    step(&s, 1, "role_revoke_permission");
    s.role_delete(&pb::AuthRoleDeleteRequest { role: "r".into() })?;
    step(&s, 1, "role_delete");
    s.enable()?;
    step(&s, 0, "enable");
    s.disable();
    step(&s, 1, "disable");
    Ok(())
}

#[test]
fn snapshot_round_trip() -> R {
    let mut s = enabled_store()?;
    add_user(&mut s, "alice", "pw")?;
    s.user_add(
        &pb::AuthUserAddRequest {
            name: "np".into(),
            options: Some(authpb::UserAddOptions { no_password: true }),
            ..Default::default()
        },
        COST,
    )?;
    add_role(&mut s, "r")?;
    grant_perm(&mut s, "r", PermType::Readwrite, b"p", b"q")?;
    grant_perm(&mut s, "r", PermType::Read, b"x", b"\0")?;
    grant_role(&mut s, "alice", "r")?;
    let snap = s.to_snapshot();
    assert!(snap.enabled);
    assert_eq!(snap.revision, s.revision());
    assert_eq!(snap.users.len(), 3);
    let restored = AuthStore::from_snapshot(snap.clone())?;
    assert_eq!(restored, s);
    assert_eq!(restored.to_snapshot(), snap);
    // Behaviour survives too: permissions and passwords.
    assert_eq!(
        restored.check_range("alice", b"pp", b"", PermType::Write),
        Ok(())
    );
    assert_eq!(
        restored.check_range("alice", b"a", b"", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(restored.check_password("alice", "pw"), Ok(s.revision()));
    // And via protobuf bytes.
    let bytes = prost::Message::encode_to_vec(&snap);
    let decoded: AuthSnapshot = prost::Message::decode(bytes.as_slice())
        .map_err(|e| AuthError::InvalidSnapshot(e.to_string()))?;
    assert_eq!(AuthStore::from_snapshot(decoded)?, s);
    // An empty store too.
    let empty = AuthStore::new();
    assert_eq!(AuthStore::from_snapshot(empty.to_snapshot())?, empty);
    Ok(())
}

#[test]
fn bad_snapshots_are_rejected() {
    let user = |name: &[u8]| authpb::User {
        name: name.to_vec(),
        ..Default::default()
    };
    let dup = AuthSnapshot {
        users: vec![user(b"a"), user(b"a")],
        ..Default::default()
    };
    assert!(matches!(
        AuthStore::from_snapshot(dup),
        Err(AuthError::InvalidSnapshot(_))
    ));
    let bad_utf8 = AuthSnapshot {
        roles: vec![authpb::Role {
            name: vec![0xff],
            key_permission: vec![],
        }],
        ..Default::default()
    };
    assert!(matches!(
        AuthStore::from_snapshot(bad_utf8),
        Err(AuthError::InvalidSnapshot(_))
    ));
}

#[test]
fn tokens_with_store_flow() -> R {
    use std::time::{Duration, Instant};
    let mut s = enabled_store()?;
    add_user(&mut s, "alice", "pw")?;
    let tokens = TokenStore::new(Duration::from_secs(300));
    let now = Instant::now();
    let checked = s.check_password("alice", "pw")?;
    let prefix = TokenStore::gen_token_prefix();
    s.authenticate("alice")?;
    let tok = tokens.assign_at(&prefix, 17, "alice", now);
    assert_eq!(checked, s.revision());
    assert_eq!(tokens.username_of(&tok, now).as_deref(), Some("alice"));
    s.user_delete(&pb::AuthUserDeleteRequest {
        name: "alice".into(),
    })?;
    tokens.invalidate_user("alice");
    assert_eq!(tokens.username_of(&tok, now), None);
    Ok(())
}
