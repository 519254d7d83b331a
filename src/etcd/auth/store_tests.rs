//! Tests of the auth store rules, error texts and revision bumps (etcd 3.5 behaviour,
//! spot-checked against a real etcd 3.4.23 where the two agree).

use super::*;
use crate::proto::authpb;
use crate::proto::etcdserverpb as pb;

pub(super) const COST: u32 = 4;

pub(super) type R<T = ()> = Result<T, AuthError>;

pub(super) fn add_user(s: &mut AuthStore, name: &str, pw: &str) -> R {
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

pub(super) fn add_role(s: &mut AuthStore, name: &str) -> R {
    s.role_add(&pb::AuthRoleAddRequest { name: name.into() })?;
    Ok(())
}

pub(super) fn grant_role(s: &mut AuthStore, user: &str, role: &str) -> R {
    s.user_grant_role(&pb::AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })?;
    Ok(())
}

pub(super) fn grant_perm(s: &mut AuthStore, role: &str, t: PermType, key: &[u8], end: &[u8]) -> R {
    s.role_grant_permission(&pb::AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(perm(t, key, end)),
    })?;
    Ok(())
}

pub(super) fn perm(t: PermType, key: &[u8], end: &[u8]) -> authpb::Permission {
    authpb::Permission {
        perm_type: t as i32,
        key: key.to_vec(),
        range_end: end.to_vec(),
    }
}

/// root:rootpw with the root role (role "root" not created), auth enabled.
pub(super) fn enabled_store() -> R<AuthStore> {
    let mut s = AuthStore::new();
    add_user(&mut s, "root", "rootpw")?;
    grant_role(&mut s, "root", "root")?;
    s.enable()?;
    Ok(s)
}

#[test]
fn new_store_is_disabled_at_revision_1() {
    let s = AuthStore::new();
    assert_eq!(s.enabled_and_revision(), (false, 1));
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
    assert_eq!(s.enabled_and_revision(), (false, rev + 1), "disable bumps");
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
    assert_eq!(add_user(&mut s, "alice", "other"), Err(AuthError::UserAlreadyExist));
    assert_eq!(s.revision(), 2, "failed applies do not bump");
    // Bad base64 in hashedPassword: etcd answers ErrNoPasswordUser.
    let bad = pb::AuthUserAddRequest {
        name: "bob".into(),
        hashed_password: "not base64!".into(),
        ..Default::default()
    };
    assert_eq!(s.user_add(&bad, COST), Err(AuthError::NoPasswordUser));
    assert!(s.user_get(&pb::AuthUserGetRequest { name: "bob".into() }).is_err());
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
    assert_eq!(s.check_password("root", "rootpw"), Err(AuthError::AuthNotEnabled));
    s.enable()?;
    let rev = s.revision();
    assert_eq!(s.check_password("root", "rootpw"), Ok(rev));
    assert_eq!(s.check_password("root", "wrong"), Err(AuthError::AuthFailed));
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
    assert_eq!(s.check_password("np", "new"), Err(AuthError::NoPasswordUser));
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
        s.user_get(&pb::AuthUserGetRequest { name: "alice".into() }),
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
    assert_eq!(grant_role(&mut s, "ghost", "nosuch"), Err(AuthError::UserNotFound));
    assert_eq!(grant_role(&mut s, "alice", "nosuch"), Err(AuthError::RoleNotFound));
    grant_role(&mut s, "alice", "b")?;
    grant_role(&mut s, "alice", "a")?;
    let rev = s.revision();
    grant_role(&mut s, "alice", "a")?; // already granted: success, no change
    assert_eq!(s.revision(), rev);
    let get = s.user_get(&pb::AuthUserGetRequest { name: "alice".into() })?;
    assert_eq!(get.roles, vec!["a".to_string(), "b".to_string()], "sorted");

    let revoke = |n: &str, r: &str| pb::AuthUserRevokeRoleRequest {
        name: n.into(),
        role: r.into(),
    };
    assert_eq!(
        s.user_revoke_role(&revoke("alice", "nosuch")),
        Err(AuthError::RoleNotGranted)
    );
    assert_eq!(s.user_revoke_role(&revoke("ghost", "a")), Err(AuthError::UserNotFound));
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
    assert_eq!(s.role_list().roles, vec!["r1".to_string(), "r2".to_string()]);
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
    assert_eq!(s.revision(), rev + 1, "one bump for the role and its revocations");
    assert!(!s.has_role("alice", "r1"));
    assert_eq!(
        s.user_get(&pb::AuthUserGetRequest { name: "bob".into() })?.roles,
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
    assert!(!s.is_admin("root"), "deleting the role revokes it from root");
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
    assert_eq!(s.role_grant_permission(&no_perm), Err(AuthError::PermissionNotGiven));
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
    let got = s.role_get(&pb::AuthRoleGetRequest { role: "r".into() })?.perm;
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
    let got = s.role_get(&pb::AuthRoleGetRequest { role: "r".into() })?.perm;
    assert_eq!(got.len(), 2);
    Ok(())
}
