//! Tests of the auth store's authorization checks, snapshots and the token flow.

use super::store_tests::{add_role, add_user, enabled_store, grant_perm, grant_role, COST, R};
use super::*;
use crate::proto::authpb;
use crate::proto::etcdserverpb as pb;
use crate::proto::rustcdpb::AuthSnapshot;

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
    assert_eq!(s.check_range("", b"a", b"", PermType::Read), Err(AuthError::UserEmpty));
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
    assert_eq!(s.check_range("u", b"zz", b"\0", PermType::Readwrite), Ok(()));
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
    assert_eq!(s.check_user_get("u", "root"), Err(AuthError::PermissionDenied));
    assert_eq!(s.check_user_get("root", "u"), Ok(()));
    assert_eq!(s.check_role_get("u", "r"), Ok(()));
    assert_eq!(s.check_role_get("u", "other"), Err(AuthError::PermissionDenied));
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
    assert_eq!(restored.check_range("alice", b"pp", b"", PermType::Write), Ok(()));
    assert_eq!(
        restored.check_range("alice", b"a", b"", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(restored.check_password("alice", "pw"), Ok(s.revision()));
    // And via protobuf bytes.
    let bytes = prost::Message::encode_to_vec(&snap);
    let decoded: AuthSnapshot =
        prost::Message::decode(bytes.as_slice()).map_err(|e| AuthError::InvalidSnapshot(e.to_string()))?;
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
    s.user_delete(&pb::AuthUserDeleteRequest { name: "alice".into() })?;
    tokens.invalidate_user("alice");
    assert_eq!(tokens.username_of(&tok, now), None);
    Ok(())
}
