//! The cases of the conformance suite. Each names the containerd testsuite case it covers
//! (`core/snapshots/testsuite/testsuite.go`, `issues.go`) or `None` for berth's additions.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::fstest::{self, chown, dir, file, link, remove_all, rename, Op};
use super::{CaseFn, Ctx, Fail};
use crate::snapshots::{Error, Info, Kind, Labels, Result as SnapResult};
use berth_api::errdefs::{Classify, Kind as ErrKind};

type R = std::result::Result<(), Fail>;

/// (suite name, containerd name, function), in containerd's order, then berth's additions.
pub(super) const ALL: &[(&str, Option<&str>, CaseFn)] = &[
    ("Basic", Some("Basic"), basic),
    ("StatActive", Some("StatActive"), stat_active),
    ("StatCommitted", Some("StatComitted"), stat_committed),
    ("Transitivity", Some("TransitivityTest"), transitivity),
    (
        "PrepareViewFailing",
        Some("PreareViewFailingtest"),
        prepare_view_failing,
    ),
    ("Update", Some("Update"), update),
    ("Remove", Some("Remove"), remove),
    ("Walk", Some("Walk"), walk),
    (
        "LayerFileUpdate",
        Some("LayerFileupdate"),
        layer_file_update,
    ),
    (
        "RemoveDirectoryInLowerLayer",
        Some("RemoveDirectoryInLowerLayer"),
        remove_dir_in_lower,
    ),
    ("Chown", Some("Chown"), chown_case),
    (
        "DirectoryPermissionOnCommit",
        Some("DirectoryPermissionOnCommit"),
        dir_permission_on_commit,
    ),
    (
        "RemoveIntermediateSnapshot",
        Some("RemoveIntermediateSnapshot"),
        remove_intermediate,
    ),
    (
        "DeletedFilesInChildSnapshot",
        Some("DeletedFilesInChildSnapshot"),
        deleted_files_in_child,
    ),
    (
        "MoveFileFromLowerLayer",
        Some("MoveFileFromLowerLayer"),
        move_file_from_lower,
    ),
    ("ViewReadonly", Some("ViewReadonly"), view_readonly),
    ("StatInWalk", Some("StatInWalk"), stat_in_walk),
    ("CloseTwice", Some("CloseTwice"), close_twice),
    ("RootPermission", Some("RootPermission"), root_permission),
    ("Rename", Some("Rename"), rename_case),
    ("128LayersMount", Some("128LayersMount"), layers_128),
    ("CommitTwice", None, commit_twice),
    ("RemoveWithChildren", None, remove_with_children),
    ("ErrorCodes", None, error_codes),
    ("ViewInheritance", None, view_inheritance),
    ("Usage", None, usage),
    ("Reopen", None, reopen),
    ("SpecialFiles", None, special_files),
    ("RemoveInWalk", None, remove_in_walk),
    ("CleanupKeepsRecords", None, cleanup_keeps_records),
];

trait Check<T> {
    fn ctx(self, what: &str) -> std::result::Result<T, Fail>;
}

impl<T, E: std::fmt::Display> Check<T> for std::result::Result<T, E> {
    fn ctx(self, what: &str) -> std::result::Result<T, Fail> {
        self.map_err(|e| Fail::Failed(format!("{what}: {e}")))
    }
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> R {
    if cond {
        Ok(())
    } else {
        Err(Fail::Failed(msg()))
    }
}

/// The result must be an error of the given class.
fn expect_code<T: std::fmt::Debug>(
    r: SnapResult<T>,
    code: ErrKind,
    what: &str,
) -> std::result::Result<Error, Fail> {
    match r {
        Ok(v) => Err(Fail::Failed(format!(
            "{what}: succeeded ({v:?}), expected {code}"
        ))),
        Err(e) if e.kind() == code => Ok(e),
        Err(e) => Err(Fail::Failed(format!(
            "{what}: expected {code}, got {:?}: {e}",
            e.kind()
        ))),
    }
}

/// containerd tags every snapshot with a GC root label; so do we (it also exercises labels).
fn labels() -> Labels {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Labels::from([("containerd.io/gc.root".to_string(), now.to_string())])
}

fn lbl(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn apply(root: &std::path::Path, ops: &[Op]) -> R {
    fstest::apply(root, ops).map_err(Fail::Failed)
}

/// Prepares `key` on `parent`, mounts it, applies `ops`, unmounts and commits it as `name`.
fn commit_layer(ctx: &mut Ctx<'_>, name: &str, parent: &str, ops: &[Op]) -> R {
    let key = format!("{name}-prepare");
    let m = ctx
        .sn
        .prepare(&key, parent, labels())
        .ctx(&format!("prepare {key}"))?;
    let g = ctx.mount(&m, "prepare")?;
    let applied = apply(g.path(), ops);
    g.unmount().ctx("unmount")?;
    applied?;
    ctx.sn
        .commit(name, &key, labels())
        .ctx(&format!("commit {name}"))
}

/// containerd's `checkSnapshots`: a chain of layers, each checked through a view against the
/// same changes applied to one flat directory.
fn check_snapshots(ctx: &mut Ctx<'_>, layers: &[Vec<Op>]) -> R {
    ctx.need_mounts()?;
    let flat = ctx.dir("flat")?;
    let mut parent = String::new();
    for (i, ops) in layers.iter().enumerate() {
        let name = format!("layer-{}-{}", i + 1, ctx.seq);
        commit_layer(ctx, &name, &parent, ops).map_err(|e| match e {
            Fail::Failed(m) => Fail::Failed(format!("layer {}: {m}", i + 1)),
            s => s,
        })?;
        apply(&flat, ops)?;
        let view = format!("{name}-view");
        let m = ctx.sn.view(&view, &name, labels()).ctx("view")?;
        let g = ctx.mount(&m, "check")?;
        let r = fstest::check_equal(&flat, g.path());
        g.unmount().ctx("unmount view")?;
        ctx.sn.remove(&view).ctx("remove view")?;
        r.map_err(|e| Fail::Failed(format!("layer {}: {e}", i + 1)))?;
        parent = name;
    }
    Ok(())
}

fn stat_is(ctx: &Ctx<'_>, key: &str, kind: Kind, parent: &str) -> std::result::Result<Info, Fail> {
    let i = ctx.sn.stat(key).ctx(&format!("stat {key}"))?;
    ensure(
        i.name == key && i.kind == kind && i.parent == parent,
        || format!("stat {key}: expected {kind} with parent {parent:?}, got {i:?}"),
    )?;
    Ok(i)
}

fn basic(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    let initial = vec![
        file("/foo", b"foo\n", 0o777),
        dir("/a", 0o755),
        dir("/a/b", 0o755),
        dir("/a/b/c", 0o755),
    ];
    let diff = vec![
        file("/bar", b"bar\n", 0o777),
        file("/foo", b"bar\n", 0o777),
        remove_all("/a/b"),
    ];
    // Keys that look like paths, as containerd's suite uses.
    let w = ctx.work.display().to_string();
    let (preparing, committed) = (format!("{w}/preparing"), format!("{w}/committed"));
    let m = ctx.sn.prepare(&preparing, "", labels()).ctx("prepare")?;
    let g = ctx.mount(&m, "preparing")?;
    let a = apply(g.path(), &initial);
    g.unmount().ctx("unmount")?;
    a?;
    ctx.sn
        .commit(&committed, &preparing, labels())
        .ctx("commit")?;
    let si = stat_is(ctx, &committed, Kind::Committed, "")?;
    ensure(ctx.sn.stat(&preparing).is_err(), || {
        "the key still exists after commit".into()
    })?;

    let flat = ctx.dir("flat")?;
    apply(&flat, &initial)?;
    let next = format!("{w}/nextlayer");
    let m = ctx
        .sn
        .prepare(&next, &committed, labels())
        .ctx("prepare next")?;
    let g = ctx.mount(&m, "next")?;
    let r = fstest::check_equal(&flat, g.path())
        .map_err(Fail::Failed)
        .and_then(|()| apply(g.path(), &diff));
    g.unmount().ctx("unmount")?;
    r?;
    stat_is(ctx, &next, Kind::Active, &committed)?;
    let next_committed = format!("{w}/committed-next");
    ctx.sn
        .commit(&next_committed, &next, labels())
        .ctx("commit next")?;
    let si2 = stat_is(ctx, &next_committed, Kind::Committed, &committed)?;
    ensure(ctx.sn.stat(&next).is_err(), || {
        "the next key still exists after commit".into()
    })?;

    let mut walked = BTreeMap::new();
    ctx.sn
        .walk(&[], &mut |i| {
            walked.insert(i.name.clone(), i.clone());
            Ok(())
        })
        .ctx("walk")?;
    for want in [&si, &si2] {
        ensure(walked.get(&want.name) == Some(want), || {
            format!(
                "walk gave {:?} for {}, stat gave {want:?}",
                walked.get(&want.name),
                want.name
            )
        })?;
    }

    apply(&flat, &diff)?;
    let nextnext = format!("{w}/nextnextlayer");
    let m = ctx
        .sn
        .view(&nextnext, &next_committed, labels())
        .ctx("view")?;
    let g = ctx.mount(&m, "nextnext")?;
    let r = fstest::check_equal(&flat, g.path());
    g.unmount().ctx("unmount")?;
    r.map_err(Fail::Failed)?;
    ctx.sn.remove(&nextnext).ctx("remove view")?;
    let e = ctx.sn.remove(&committed);
    ensure(
        matches!(&e, Err(e) if e.to_string().contains("remove")),
        || format!("removing a parent: expected an error mentioning remove, got {e:?}"),
    )?;
    ctx.sn
        .remove(&next_committed)
        .ctx("remove next committed")?;
    ctx.sn.remove(&committed).ctx("remove committed")
}

fn prepare_write(ctx: &mut Ctx<'_>, key: &str) -> R {
    let m = ctx.sn.prepare(key, "", labels()).ctx("prepare")?;
    let g = ctx.mount(&m, "preparing")?;
    let r = std::fs::write(g.path().join("foo"), b"foo\n").ctx("write foo");
    g.unmount().ctx("unmount")?;
    r
}

fn stat_active(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    prepare_write(ctx, "preparing")?;
    stat_is(ctx, "preparing", Kind::Active, "").map(|_| ())
}

fn stat_committed(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    prepare_write(ctx, "preparing")?;
    ctx.sn
        .commit("committed", "preparing", labels())
        .ctx("commit")?;
    stat_is(ctx, "committed", Kind::Committed, "").map(|_| ())
}

fn transitivity(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    commit_layer(ctx, "snapA", "", &[file("/foo", b"foo\n", 0o777)])?;
    commit_layer(ctx, "snapB", "snapA", &[file("/foo", b"foo bar\n", 0o777)])?;
    let a = stat_is(ctx, "snapA", Kind::Committed, "")?;
    let b = stat_is(ctx, "snapB", Kind::Committed, "snapA")?;
    let pb = ctx.sn.stat(&b.parent).ctx("stat parent of B")?;
    ensure(pb == a && pb.parent.is_empty(), || {
        format!("parent of B is {pb:?}")
    })
}

fn prepare_view_failing(ctx: &mut Ctx<'_>) -> R {
    ctx.sn.prepare("preparing", "", labels()).ctx("prepare")?;
    ctx.sn
        .commit("snapA", "preparing", labels())
        .ctx("commit")?;
    ctx.sn
        .prepare("newlayer", "snapA", labels())
        .ctx("prepare newlayer")?;
    expect_code(
        ctx.sn.view("newlayer", "snapA", labels()),
        ErrKind::AlreadyExists,
        "view with a prepared key",
    )?;
    ctx.sn
        .prepare("prepLayer", "snapA", labels())
        .ctx("prepare prepLayer")?;
    expect_code(
        ctx.sn.prepare("prepLayer", "snapA", labels()),
        ErrKind::AlreadyExists,
        "second prepare",
    )?;
    ctx.sn
        .view("viewLayer", "snapA", labels())
        .ctx("view viewLayer")?;
    expect_code(
        ctx.sn.view("viewLayer", "snapA", labels()),
        ErrKind::AlreadyExists,
        "second view",
    )?;
    Ok(())
}

/// containerd's `baseTestSnapshots`: c1 ← c2 ← a1, a2, c2 ← v1, v2.
fn base_snapshots(ctx: &Ctx<'_>, prefix: &str) -> SnapResult<()> {
    let p = |s: &str| format!("{prefix}{s}");
    ctx.sn.prepare(&p("c1-a"), "", labels())?;
    ctx.sn.commit(&p("c1"), &p("c1-a"), labels())?;
    ctx.sn.prepare(&p("c2-a"), &p("c1"), labels())?;
    ctx.sn.commit(&p("c2"), &p("c2-a"), labels())?;
    ctx.sn.prepare(&p("a1"), &p("c2"), labels())?;
    ctx.sn.prepare(&p("a2"), "", labels())?;
    ctx.sn.view(&p("v1"), &p("c2"), labels())?;
    ctx.sn.view(&p("v2"), "", labels())?;
    Ok(())
}

fn update(ctx: &mut Ctx<'_>) -> R {
    let t1 = SystemTime::now();
    base_snapshots(ctx, "").ctx("base snapshots")?;
    let t2 = SystemTime::now();
    let cases = [
        ("c1", Kind::Committed, ""),
        ("c2", Kind::Committed, "c1"),
        ("a1", Kind::Active, "c2"),
        ("a2", Kind::Active, ""),
        ("v1", Kind::View, "c2"),
        ("v2", Kind::View, ""),
    ];
    for (name, kind, parent) in cases {
        let mut st = stat_is(ctx, name, kind, parent)?;
        ensure(st.created >= t1 && st.created <= t2, || {
            format!("{name}: created {:?} outside the test's window", st.created)
        })?;
        ensure(st.created == st.updated, || {
            format!("{name}: updated differs from created at creation")
        })?;
        let created = st.created;
        let root = labels();
        let mut expected = lbl(&[("l1", "v1"), ("l2", "v2"), ("l3", "v3")]);
        expected.extend(root.clone());
        st.parent = "doesnotexist".into();
        st.labels = expected.clone();
        let u1 = SystemTime::now();
        let st2 = ctx.sn.update(&st, &[]).ctx(&format!("update {name}"))?;
        let u2 = SystemTime::now();
        ensure(st2.created == created, || {
            format!("{name}: created changed by update")
        })?;
        ensure(st2.updated >= u1 && st2.updated <= u2, || {
            format!(
                "{name}: updated {:?} outside the update's window",
                st2.updated
            )
        })?;
        ensure(
            st2.kind == kind && st2.parent == parent && st2.name == name,
            || format!("{name}: update changed immutable fields: {st2:?}"),
        )?;
        ensure(st2.labels == expected, || {
            format!("{name}: labels {:?}, expected {expected:?}", st2.labels)
        })?;

        let mut expected = lbl(&[("l1", "updated"), ("l3", "v3")]);
        expected.extend(root.clone());
        let mut st3 = st2.clone();
        st3.labels = lbl(&[("l1", "updated"), ("l4", "v4")]);
        let st3 = ctx
            .sn
            .update(&st3, &["labels.l1", "labels.l2"])
            .ctx("update labels.l1, labels.l2")?;
        ensure(st3.labels == expected, || {
            format!("{name}: labels {:?}, expected {expected:?}", st3.labels)
        })?;

        let mut expected = lbl(&[("l4", "v4")]);
        expected.extend(root);
        let mut st4 = st3.clone();
        st4.labels = expected.clone();
        let st4 = ctx.sn.update(&st4, &["labels"]).ctx("update labels")?;
        ensure(st4.labels == expected, || {
            format!("{name}: labels {:?}, expected {expected:?}", st4.labels)
        })?;

        let mut st5 = st4.clone();
        st5.parent = "doesnotexist".into();
        expect_code(
            ctx.sn.update(&st5, &["parent"]),
            ErrKind::InvalidArgument,
            "update of parent",
        )?;
    }
    Ok(())
}

fn remove(ctx: &mut Ctx<'_>) -> R {
    let sn = &ctx.sn;
    sn.prepare("committed-a", "", labels()).ctx("prepare")?;
    sn.commit("committed-1", "committed-a", labels())
        .ctx("commit")?;
    sn.prepare("reuse-1", "committed-1", labels())
        .ctx("prepare reuse-1")?;
    sn.remove("reuse-1").ctx("remove reuse-1")?;
    sn.view("reuse-1", "committed-1", labels())
        .ctx("view reuse-1")?;
    sn.remove("reuse-1").ctx("remove view reuse-1")?;
    sn.prepare("reuse-1", "", labels())
        .ctx("prepare reuse-1 again")?;
    sn.remove("committed-1").ctx("remove committed-1")?;
    sn.commit("committed-1", "reuse-1", labels())
        .ctx("commit reuse-1 as committed-1")
}

fn walk(ctx: &mut Ctx<'_>) -> R {
    let gc = ("containerd.io/gc.root", "check-walk");
    let sn = &ctx.sn;
    sn.prepare("a-np", "", lbl(&[gc])).ctx("prepare")?;
    sn.prepare("p-tmp", "", lbl(&[gc])).ctx("prepare")?;
    sn.commit("p", "p-tmp", lbl(&[gc])).ctx("commit")?;
    sn.prepare("a", "p", lbl(&[gc])).ctx("prepare")?;
    sn.view("v", "p", lbl(&[gc])).ctx("view")?;
    sn.prepare("p-wl-tmp", "", lbl(&[gc])).ctx("prepare")?;
    sn.commit("p-wl", "p-wl-tmp", lbl(&[("l", "1"), gc]))
        .ctx("commit")?;
    sn.prepare("a-wl", "p-wl", lbl(&[("l", "2"), gc]))
        .ctx("prepare")?;
    sn.view("v-wl", "p-wl", lbl(&[("l", "3"), gc]))
        .ctx("view")?;
    sn.prepare("a-np-wl", "", lbl(&[("l", "2"), gc]))
        .ctx("prepare")?;
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"],
            &[r#"labels."containerd.io/gc.root"==check-walk"#],
        ),
        (
            &["a-np", "a", "a-wl", "a-np-wl"],
            &[r#"kind==active,labels."containerd.io/gc.root"==check-walk"#],
        ),
        (
            &["v", "v-wl"],
            &[r#"kind==view,labels."containerd.io/gc.root"==check-walk"#],
        ),
        (
            &["p", "p-wl"],
            &[r#"kind==committed,labels."containerd.io/gc.root"==check-walk"#],
        ),
        (&["p", "a-np-wl"], &["name==p", "name==a-np-wl"]),
        (&["a-wl"], &["name==a-wl,labels.l"]),
        (&["a", "v"], &["parent==p"]),
        (
            &["a", "v", "a-wl", "v-wl"],
            &[r#"parent!="",labels."containerd.io/gc.root"==check-walk"#],
        ),
        (&["p-wl", "a-wl", "v-wl", "a-np-wl"], &["labels.l"]),
        (&["a-wl", "a-np-wl"], &["labels.l==2"]),
    ];
    for (i, (want, filters)) in cases.iter().enumerate() {
        let mut got = Vec::new();
        sn.walk(filters, &mut |info| {
            got.push(info.name.clone());
            Ok(())
        })
        .ctx(&format!("walk {filters:?}"))?;
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        ensure(got == want, || {
            format!("[{i}] walk {filters:?}: got {got:?}, expected {want:?}")
        })?;
    }
    Ok(())
}

fn layer_file_update(ctx: &mut Ctx<'_>) -> R {
    let l1 = vec![
        dir("/etc", 0o700),
        file("/etc/hosts", b"mydomain 10.0.0.1", 0o644),
        file("/etc/profile", b"PATH=/usr/bin", 0o644),
    ];
    let l2 = vec![
        file("/etc/hosts", b"mydomain 10.0.0.2", 0o644),
        file("/etc/profile", b"PATH=/usr/bin", 0o666),
        dir("/root", 0o700),
        file("/root/.bashrc", b"PATH=/usr/sbin:/usr/bin", 0o644),
    ];
    // Five times, each starting on a new second: the original bug depended on timestamps.
    for i in 0..5 {
        if i > 0 {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            std::thread::sleep(std::time::Duration::from_nanos(
                1_000_000_000 - u64::from(now.subsec_nanos()),
            ));
        }
        check_snapshots(ctx, &[l1.clone(), l2.clone()])?;
    }
    Ok(())
}

fn remove_dir_in_lower(ctx: &mut Ctx<'_>) -> R {
    check_snapshots(
        ctx,
        &[
            vec![dir("/lib", 0o700), file("/lib/hidden", b"", 0o644)],
            vec![
                remove_all("/lib"),
                dir("/lib", 0o700),
                file("/lib/not-hidden", b"", 0o644),
            ],
            vec![file("/lib/newfile", b"", 0o644)],
        ],
    )
}

fn chown_case(ctx: &mut Ctx<'_>) -> R {
    ctx.need_chown()?;
    check_snapshots(
        ctx,
        &[
            vec![
                dir("/opt", 0o700),
                dir("/opt/a", 0o700),
                dir("/opt/a/b", 0o700),
                file("/opt/a/b/file.txt", b"hello", 0o644),
            ],
            vec![
                chown("/opt", 1, 1),
                chown("/opt/a", 1, 1),
                chown("/opt/a/b", 1, 1),
                chown("/opt/a/b/file.txt", 1, 1),
            ],
        ],
    )
}

fn dir_permission_on_commit(ctx: &mut Ctx<'_>) -> R {
    ctx.need_chown()?;
    check_snapshots(
        ctx,
        &[
            vec![
                dir("/dir1", 0o700),
                dir("/dir2", 0o700),
                dir("/dir3", 0o700),
                dir("/dir4", 0o700),
                file("/dir4/f1", b"...", 0o644),
                dir("/dir5", 0o700),
                file("/dir5/f1", b"...", 0o644),
                chown("/dir1", 1, 1),
                chown("/dir2", 1, 1),
                chown("/dir3", 1, 1),
                chown("/dir5", 1, 1),
                chown("/dir5/f1", 1, 1),
            ],
            vec![
                chown("/dir2", 0, 0),
                remove_all("/dir3"),
                chown("/dir4", 1, 1),
                chown("/dir4/f1", 1, 1),
            ],
            vec![
                dir("/dir3", 0o700),
                chown("/dir3", 1, 1),
                remove_all("/dir5"),
                dir("/dir5", 0o700),
                chown("/dir5", 1, 1),
            ],
        ],
    )
}

fn remove_intermediate(ctx: &mut Ctx<'_>) -> R {
    let sn = &ctx.sn;
    sn.prepare("base", "", labels()).ctx("prepare base")?;
    sn.commit("committed-base", "base", labels())
        .ctx("commit base")?;
    sn.prepare("intermediate", "committed-base", labels())
        .ctx("prepare intermediate")?;
    sn.commit("committed-inter", "intermediate", labels())
        .ctx("commit intermediate")?;
    sn.prepare("toplayer", "committed-inter", labels())
        .ctx("prepare top")?;
    expect_code(
        sn.remove("committed-inter"),
        ErrKind::FailedPrecondition,
        "removing the intermediate layer",
    )?;
    sn.remove("toplayer").ctx("remove top")?;
    sn.remove("committed-inter").ctx("remove intermediate")?;
    sn.remove("committed-base").ctx("remove base")
}

fn deleted_files_in_child(ctx: &mut Ctx<'_>) -> R {
    check_snapshots(
        ctx,
        &[
            vec![
                file("/foo", b"foo\n", 0o777),
                file("/foobar", b"foobar\n", 0o777),
            ],
            vec![remove_all("/foobar")],
            vec![],
        ],
    )
}

fn move_file_from_lower(ctx: &mut Ctx<'_>) -> R {
    check_snapshots(
        ctx,
        &[
            vec![
                dir("/dir1", 0o700),
                file("/dir1/f1", b"Hello", 0o644),
                dir("dir2", 0o700),
                file("dir2/f2", b"...", 0o644),
            ],
            vec![
                dir("/dir3", 0o700),
                file("/dir3/f1", b"Hello", 0o644),
                remove_all("/dir1"),
                link("dir2/f2", "dir3/f2"),
                remove_all("dir2/f2"),
            ],
        ],
    )
}

fn view_readonly(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    if !ctx.caps.view_readonly {
        return Err(Fail::Skipped(
            "views of this snapshotter are writable (capability `view_readonly` off)".into(),
        ));
    }
    ctx.sn.prepare("preparing", "", labels()).ctx("prepare")?;
    ctx.sn
        .commit("committed", "preparing", labels())
        .ctx("commit")?;
    let m = ctx.sn.view("view", "committed", labels()).ctx("view")?;
    let g = ctx.mount(&m, "view-mount")?;
    let w = std::fs::write(g.path().join("testfile"), b"testcontent");
    g.unmount().ctx("unmount")?;
    ensure(w.is_err(), || {
        "writing through a view succeeded; it must fail (EROFS)".into()
    })?;
    ctx.sn.remove("view").ctx("remove view")?;
    ctx.sn.remove("committed").ctx("remove committed")
}

fn stat_in_walk(ctx: &mut Ctx<'_>) -> R {
    let prefix = "stats-in-walk-";
    base_snapshots(ctx, prefix).ctx("create snapshots")?;
    let sn = &ctx.sn;
    let mut seen = 0;
    sn.walk(&[], &mut |si| {
        if !si.name.starts_with(prefix) {
            return Ok(());
        }
        seen += 1;
        let si2 = sn.stat(&si.name)?;
        if &si2 != si {
            return Err(Error::InvalidArgument {
                reason: format!("walk gave {si:?}, stat gave {si2:?}"),
            });
        }
        Ok(())
    })
    .ctx("walk with stat")?;
    ensure(seen == 6, || {
        format!("walk saw {seen} snapshots, expected 6 (c1, c2, a1, a2, v1, v2)")
    })
}

fn close_twice(ctx: &mut Ctx<'_>) -> R {
    ctx.sn
        .prepare("closeTwice-prepare", "", labels())
        .ctx("prepare")?;
    ctx.sn
        .commit("closeTwice", "closeTwice-prepare", labels())
        .ctx("commit")?;
    ctx.sn.remove("closeTwice").ctx("remove")?;
    ctx.sn.close().ctx("first close")?;
    ctx.sn.close().ctx("second close")?;
    ensure(ctx.sn.stat("closeTwice").is_err(), || {
        "stat after close succeeded".into()
    })
}

fn root_permission(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    use std::os::unix::fs::PermissionsExt;
    let m = ctx.sn.prepare("preparing", "", labels()).ctx("prepare")?;
    let g = ctx.mount(&m, "preparing")?;
    let mode = std::fs::metadata(g.path())
        .ctx("stat root")?
        .permissions()
        .mode()
        & 0o777;
    g.unmount().ctx("unmount")?;
    ensure(mode == 0o755, || {
        format!("root of a new snapshot has mode {mode:o}, expected 755")
    })
}

fn rename_case(ctx: &mut Ctx<'_>) -> R {
    let l1 = vec![
        dir("/dir1", 0o700),
        dir("/somefiles", 0o700),
        file("/somefiles/f1", b"was here first!", 0o644),
        file("/somefiles/f2", b"nothing interesting", 0o644),
    ];
    let mut l2 = Vec::new();
    if ctx.caps.rename_lower_directory {
        l2.push(rename("/dir1", "/dir2"));
    }
    l2.extend([
        file("/somefiles/f1-overwrite", b"new content 1", 0o644),
        rename("/somefiles/f1-overwrite", "/somefiles/f1"),
        rename("/somefiles/f2", "/somefiles/f3"),
    ]);
    check_snapshots(ctx, &[l1, l2])
}

fn layers_128(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    let mut layers = vec![vec![
        file("/bottom", b"way at the bottom\n", 0o777),
        file("/overwriteme", b"FIRST!\n", 0o777),
        dir("/addhere", 0o755),
        dir("/onlyme", 0o755),
        file("/onlyme/bottom", b"bye!\n", 0o777),
    ]];
    for i in 1..=127 {
        layers.push(vec![
            file("/overwriteme", format!("{i} WAS HERE!\n").as_bytes(), 0o777),
            file(&format!("/addhere/file-{i}"), b"same\n", 0o755),
            remove_all("/onlyme"),
            dir("/onlyme", 0o755),
            file(&format!("/onlyme/file-{i}"), b"only me!\n", 0o777),
        ]);
    }
    let flat = ctx.dir("flat")?;
    let mut parent = String::new();
    for (i, ops) in layers.iter().enumerate() {
        let key = format!("prepare-layer-{i}");
        let m = ctx
            .sn
            .prepare(&key, &parent, labels())
            .ctx(&format!("[layer {i}] prepare"))?;
        let g = ctx.mount(&m, "layer")?;
        let r = fstest::check_equal(&flat, g.path())
            .map_err(|e| format!("before apply: {e}"))
            .and_then(|()| fstest::apply(&flat, ops))
            .and_then(|()| fstest::apply(g.path(), ops))
            .and_then(|()| {
                fstest::check_equal(&flat, g.path()).map_err(|e| format!("after apply: {e}"))
            });
        g.unmount().ctx("unmount")?;
        r.map_err(|e| Fail::Failed(format!("[layer {i}] {e}")))?;
        parent = format!("committed-{i}");
        ctx.sn
            .commit(&parent, &key, labels())
            .ctx(&format!("[layer {i}] commit"))?;
    }
    let m = ctx.sn.view("fullview", &parent, labels()).ctx("view")?;
    let g = ctx.mount(&m, "fullview")?;
    let r = fstest::check_equal(&flat, g.path());
    g.unmount().ctx("unmount")?;
    r.map_err(|e| Fail::Failed(format!("full view: {e}")))
}

fn commit_twice(ctx: &mut Ctx<'_>) -> R {
    let sn = &ctx.sn;
    sn.prepare("k", "", labels()).ctx("prepare")?;
    sn.commit("A", "k", labels()).ctx("commit")?;
    expect_code(
        sn.commit("A2", "k", labels()),
        ErrKind::NotFound,
        "committing a key a second time",
    )?;
    sn.prepare("k2", "", labels()).ctx("prepare k2")?;
    expect_code(
        sn.commit("A", "k2", labels()),
        ErrKind::AlreadyExists,
        "committing onto a taken name",
    )?;
    stat_is(ctx, "k2", Kind::Active, "")?;
    ctx.sn.view("v", "A", labels()).ctx("view")?;
    expect_code(
        ctx.sn.commit("V", "v", labels()),
        ErrKind::FailedPrecondition,
        "committing a view",
    )?;
    Ok(())
}

fn remove_with_children(ctx: &mut Ctx<'_>) -> R {
    let sn = &ctx.sn;
    sn.prepare("p-a", "", labels()).ctx("prepare")?;
    sn.commit("P", "p-a", labels()).ctx("commit")?;
    sn.view("v", "P", labels()).ctx("view")?;
    let e = expect_code(
        sn.remove("P"),
        ErrKind::FailedPrecondition,
        "removing the parent of a view",
    )?;
    ensure(e.to_string().contains("remove"), || {
        format!("error does not say remove: {e}")
    })?;
    sn.remove("v").ctx("remove view")?;
    sn.prepare("a", "P", labels()).ctx("prepare child")?;
    expect_code(
        sn.remove("P"),
        ErrKind::FailedPrecondition,
        "removing the parent of an active snapshot",
    )?;
    sn.commit("C", "a", labels()).ctx("commit child")?;
    expect_code(
        sn.remove("P"),
        ErrKind::FailedPrecondition,
        "removing the parent of a committed snapshot",
    )?;
    sn.remove("C").ctx("remove child")?;
    sn.remove("P").ctx("remove parent")?;
    expect_code(sn.stat("P"), ErrKind::NotFound, "stat after remove").map(|_| ())
}

fn error_codes(ctx: &mut Ctx<'_>) -> R {
    use berth_api::errdefs::Kind as Code;
    let sn = &ctx.sn;
    expect_code(sn.stat("missing"), Code::NotFound, "stat missing")?;
    expect_code(
        sn.prepare("x", "missing", labels()),
        Code::NotFound,
        "prepare on a missing parent",
    )?;
    expect_code(
        sn.view("x", "missing", labels()),
        Code::NotFound,
        "view on a missing parent",
    )?;
    sn.prepare("act", "", labels()).ctx("prepare")?;
    expect_code(
        sn.prepare("y", "act", labels()),
        Code::InvalidArgument,
        "prepare on an active parent",
    )?;
    sn.view("vv", "", labels()).ctx("view")?;
    expect_code(
        sn.view("z", "vv", labels()),
        Code::InvalidArgument,
        "view on a view parent",
    )?;
    expect_code(
        sn.prepare("", "", labels()),
        Code::InvalidArgument,
        "prepare with an empty key",
    )?;
    expect_code(sn.remove("missing"), Code::NotFound, "remove missing")?;
    expect_code(sn.mounts("missing"), Code::NotFound, "mounts missing")?;
    expect_code(sn.usage("missing"), Code::NotFound, "usage missing")?;
    expect_code(
        sn.commit("n", "missing", labels()),
        Code::NotFound,
        "commit missing",
    )?;
    let mut info = sn.stat("act").ctx("stat")?;
    info.name = "missing".into();
    expect_code(sn.update(&info, &[]), Code::NotFound, "update missing")?;
    expect_code(
        sn.walk(&["kind=active"], &mut |_| Ok(())),
        Code::InvalidArgument,
        "walk with a bad filter",
    )?;
    let big = lbl(&[("k", &"x".repeat(crate::snapshots::MAX_LABEL_SIZE))]);
    expect_code(
        sn.prepare("big", "", big),
        Code::InvalidArgument,
        "prepare with an oversized label",
    )?;
    // Nothing half-created by the failures.
    let mut n = 0;
    sn.walk(&[], &mut |_| {
        n += 1;
        Ok(())
    })
    .ctx("walk")?;
    ensure(n == 2, || {
        format!("{n} snapshots after the failed calls, expected 2")
    })
}

fn view_inheritance(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    commit_layer(ctx, "A", "", &[file("/a", b"a", 0o644)])?;
    commit_layer(ctx, "B", "A", &[file("/b", b"b", 0o644)])?;
    commit_layer(ctx, "C", "B", &[file("/c", b"c", 0o644), remove_all("/a")])?;
    let names = |p: &std::path::Path| -> std::result::Result<Vec<String>, Fail> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .ctx("read view")?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .ctx("read view")?;
        v.sort();
        Ok(v)
    };
    for (view, parent, want) in [
        ("vA", "A", vec!["a"]),
        ("vB", "B", vec!["a", "b"]),
        ("vC", "C", vec!["b", "c"]),
    ] {
        let m = ctx.sn.view(view, parent, labels()).ctx("view")?;
        stat_is(ctx, view, Kind::View, parent)?;
        let g = ctx.mount(&m, view)?;
        let got = names(g.path());
        g.unmount().ctx("unmount")?;
        let got = got?;
        ensure(got == want, || {
            format!("view of {parent} lists {got:?}, expected {want:?}")
        })?;
    }
    // Changes in an active child of C never show in a view of C.
    let m = ctx
        .sn
        .prepare("child", "C", labels())
        .ctx("prepare child")?;
    let gc = ctx.mount(&m, "child")?;
    std::fs::write(gc.path().join("d"), b"d").ctx("write in child")?;
    let mv = ctx.sn.mounts("vC").ctx("mounts of vC")?;
    let gv = ctx.mount(&mv, "vC-again")?;
    let got = names(gv.path());
    gv.unmount().ctx("unmount")?;
    gc.unmount().ctx("unmount")?;
    let got = got?;
    ensure(got == ["b", "c"], || {
        format!("view of C shows {got:?} while its sibling active snapshot changed")
    })
}

fn usage(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    let m = ctx.sn.prepare("u-a", "", labels()).ctx("prepare")?;
    let before = ctx.sn.usage("u-a").ctx("usage")?;
    let g = ctx.mount(&m, "u-a")?;
    let w = std::fs::write(g.path().join("big"), vec![0x5au8; 1 << 20]);
    g.unmount().ctx("unmount")?;
    w.ctx("write 1 MiB")?;
    let after = ctx.sn.usage("u-a").ctx("usage")?;
    ensure(
        after.size >= before.size + (1 << 20) && after.inodes == before.inodes + 1,
        || format!("usage went from {before:?} to {after:?} after writing one 1 MiB file"),
    )?;
    ctx.sn.commit("u-c", "u-a", labels()).ctx("commit")?;
    let committed = ctx.sn.usage("u-c").ctx("usage of committed")?;
    ensure(committed == after, || {
        format!("committed usage {committed:?} differs from the active one {after:?}")
    })
}

fn reopen(ctx: &mut Ctx<'_>) -> R {
    ctx.need_mounts()?;
    commit_layer(ctx, "base", "", &[file("/kept", b"survives", 0o600)])?;
    let active = ctx
        .sn
        .prepare("r-active", "base", lbl(&[("x", "1")]))
        .ctx("prepare")?;
    ctx.sn.view("r-view", "base", labels()).ctx("view")?;
    let infos: Vec<Info> = ["base", "r-active", "r-view"]
        .iter()
        .map(|k| ctx.sn.stat(k))
        .collect::<SnapResult<_>>()
        .ctx("stat")?;
    ctx.sn.close().ctx("close")?;
    ctx.sn = (ctx.factory)(&ctx.root).ctx("reopen")?;
    for i in &infos {
        let again = ctx.sn.stat(&i.name).ctx("stat after reopen")?;
        ensure(&again == i, || {
            format!("after reopen {again:?}, before {i:?}")
        })?;
    }
    let m = ctx.sn.mounts("r-active").ctx("mounts after reopen")?;
    ensure(m == active, || {
        format!("mounts changed across reopen: {m:?} vs {active:?}")
    })?;
    let mv = ctx.sn.mounts("r-view").ctx("mounts of view")?;
    let g = ctx.mount(&mv, "r-view")?;
    let got = std::fs::read(g.path().join("kept"));
    g.unmount().ctx("unmount")?;
    ensure(got.as_deref().ok() == Some(&b"survives"[..]), || {
        format!("read through the view after reopen: {got:?}")
    })
}

fn special_files(ctx: &mut Ctx<'_>) -> R {
    ctx.need_chown()?;
    check_snapshots(
        ctx,
        &[
            vec![
                file("/suid", b"x", 0o4755),
                link("/suid", "/suid-link"),
                Op::Symlink("suid".into(), "/rel-link".into()),
                Op::Symlink("/nonexistent/target".into(), "/dangling".into()),
                Op::Fifo("/fifo".into(), 0o640),
                dir("/sticky", 0o1777),
                file("/sticky/g", b"g", 0o2640),
                Op::Xattr("/suid".into(), "user.berth".into(), b"v1".to_vec()),
                dir("/\u{e9}t\u{e9} long name with spaces", 0o755),
                chown("/dangling", 7, 8),
            ],
            vec![
                Op::Xattr("/sticky".into(), "user.dir".into(), b"d".to_vec()),
                chown("/sticky/g", 3, 4),
                file("/new", b"n", 0o600),
            ],
        ],
    )
}

/// containerd lists `checkRemoveInWalk` as still to write: mutations from inside a walk
/// callback must neither deadlock nor disturb the walk.
fn remove_in_walk(ctx: &mut Ctx<'_>) -> R {
    base_snapshots(ctx, "riw-").ctx("create snapshots")?;
    let sn = &ctx.sn;
    let mut visited = 0;
    sn.walk(&[], &mut |i| {
        visited += 1;
        if i.kind != Kind::Committed {
            sn.remove(&i.name)?;
        }
        Ok(())
    })
    .ctx("walk removing active snapshots and views")?;
    ensure(visited == 6, || {
        format!("walk visited {visited} snapshots, expected 6")
    })?;
    let mut left = Vec::new();
    sn.walk(&[], &mut |i| {
        left.push(i.name.clone());
        Ok(())
    })
    .ctx("walk")?;
    left.sort();
    ensure(left == ["riw-c1", "riw-c2"], || {
        format!("left after removals: {left:?}")
    })
}

/// `cleanup` on a healthy snapshotter removes nothing that a record refers to.
fn cleanup_keeps_records(ctx: &mut Ctx<'_>) -> R {
    base_snapshots(ctx, "cl-").ctx("create snapshots")?;
    ctx.sn.cleanup().ctx("cleanup")?;
    for key in ["cl-a1", "cl-a2", "cl-v1", "cl-v2"] {
        ctx.sn
            .mounts(key)
            .ctx(&format!("mounts of {key} after cleanup"))?;
    }
    if ctx.caps.mounts {
        let m = ctx.sn.mounts("cl-a1").ctx("mounts")?;
        let g = ctx.mount(&m, "cl-a1")?;
        let w = std::fs::write(g.path().join("still-works"), b"x");
        g.unmount().ctx("unmount")?;
        w.ctx("write after cleanup")?;
    }
    ctx.sn
        .commit("cl-c3", "cl-a1", labels())
        .ctx("commit after cleanup")?;
    let u = ctx.sn.usage("cl-c3").ctx("usage")?;
    ensure(u.inodes >= 1, || format!("usage after cleanup: {u:?}"))
}
