//! Render step, desired state: mounts — a service's volumes, bind mounts and
//! tmpfs mounts, and the named volumes they use.

use bollard::models::{
    Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig,
};

use super::{scope, stack_labels, Ctx};
use crate::render::compose::model::{Service, ServiceVolume};
use crate::render::compose::units;

/// A service's mounts and the named volumes they use.
pub(super) struct Mounts {
    pub mounts: Vec<Mount>,
    /// Named volumes the stack creates.
    pub volumes: Vec<String>,
    /// Named volumes declared external.
    pub external: Vec<String>,
}

/// A named volume a mount uses.
enum Volume {
    Created(String),
    External(String),
}

/// Converts a service's `volumes:`; bad ones are problems and left out.
pub(super) fn mounts(ctx: &mut Ctx, key: &str, svc: &Service) -> Mounts {
    let mut out = Mounts {
        mounts: Vec::new(),
        volumes: Vec::new(),
        external: Vec::new(),
    };
    for (i, v) in svc.volumes.iter().enumerate() {
        let idx = i.to_string();
        let path = ["services", key, "volumes", idx.as_str()];
        let mount = match v.kind.as_str() {
            "volume" => volume_mount(ctx, &path, v).map(|(mount, volume)| {
                match volume {
                    Some(Volume::Created(name)) => out.volumes.push(name),
                    Some(Volume::External(name)) => out.external.push(name),
                    None => {}
                }
                mount
            }),
            "bind" => bind_mount(ctx, &path, v),
            "tmpfs" => tmpfs_mount(ctx, &path, v),
            other => {
                ctx.problem(
                    &path,
                    format!("unsupported mount type {other:?} (expected volume, bind or tmpfs)"),
                );
                None
            }
        };
        out.mounts.extend(mount);
    }
    out
}

/// A volume mount: anonymous, or of a volume defined at the top level.
fn volume_mount(ctx: &mut Ctx, path: &[&str], v: &ServiceVolume) -> Option<(Mount, Option<Volume>)> {
    let stack = ctx.stack;
    let Some(source) = &v.source else {
        let mount = Mount {
            target: Some(v.target.clone()),
            typ: Some(MountType::VOLUME),
            read_only: v.read_only.then_some(true),
            ..Default::default()
        };
        return Some((mount, None));
    };
    let Some(def) = ctx.loaded.compose.volumes.get(source) else {
        ctx.problem(
            path,
            format!("volume {source:?} is not defined under the top-level volumes"),
        );
        return None;
    };
    let name = def.name.clone().unwrap_or_else(|| scope(stack, source));
    let mut opts = MountVolumeOptions {
        no_copy: v.nocopy.then_some(true),
        ..Default::default()
    };
    let volume = if def.external {
        Volume::External(name.clone())
    } else {
        opts.labels = Some(stack_labels(stack, &def.labels));
        if def.driver.is_some() || def.driver_opts.is_some() {
            opts.driver_config = Some(MountVolumeOptionsDriverConfig {
                name: def.driver.clone(),
                options: def
                    .driver_opts
                    .as_ref()
                    .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            });
        }
        Volume::Created(name.clone())
    };
    let mount = Mount {
        target: Some(v.target.clone()),
        source: Some(name),
        typ: Some(MountType::VOLUME),
        read_only: v.read_only.then_some(true),
        volume_options: Some(opts),
        ..Default::default()
    };
    Some((mount, Some(volume)))
}

/// A bind mount: its source must be an absolute path on the node.
fn bind_mount(ctx: &mut Ctx, path: &[&str], v: &ServiceVolume) -> Option<Mount> {
    let source = v.source.clone().unwrap_or_default();
    if !source.starts_with('/') {
        ctx.problem(
            path,
            format!("bind mount source {source:?} must be an absolute path on the node"),
        );
        return None;
    }
    let propagation = match v.propagation.as_deref() {
        None => None,
        Some(p) => {
            match p {
                "private" => Some(MountBindOptionsPropagationEnum::PRIVATE),
                "rprivate" => Some(MountBindOptionsPropagationEnum::RPRIVATE),
                "shared" => Some(MountBindOptionsPropagationEnum::SHARED),
                "rshared" => Some(MountBindOptionsPropagationEnum::RSHARED),
                "slave" => Some(MountBindOptionsPropagationEnum::SLAVE),
                "rslave" => Some(MountBindOptionsPropagationEnum::RSLAVE),
                other => {
                    let mut p = path.to_vec();
                    p.extend(["bind", "propagation"]);
                    ctx.problem(
                    &p,
                    format!("invalid propagation {other:?} (expected private, rprivate, shared, rshared, slave or rslave)"),
                );
                    return None;
                }
            }
        }
    };
    Some(Mount {
        target: Some(v.target.clone()),
        source: Some(source),
        typ: Some(MountType::BIND),
        read_only: v.read_only.then_some(true),
        bind_options: propagation.map(|p| MountBindOptions {
            propagation: Some(p),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A tmpfs mount, with `tmpfs.size` in bytes.
fn tmpfs_mount(ctx: &mut Ctx, path: &[&str], v: &ServiceVolume) -> Option<Mount> {
    let size = match v.tmpfs_size.as_deref() {
        None => None,
        Some(s) => match units::ram_bytes(s) {
            Ok(n) => Some(n).filter(|n| *n != 0),
            Err(e) => {
                let mut p = path.to_vec();
                p.extend(["tmpfs", "size"]);
                ctx.problem(&p, e);
                return None;
            }
        },
    };
    Some(Mount {
        target: Some(v.target.clone()),
        typ: Some(MountType::TMPFS),
        read_only: v.read_only.then_some(true),
        tmpfs_options: size.map(|n| MountTmpfsOptions {
            size_bytes: Some(n),
            ..Default::default()
        }),
        ..Default::default()
    })
}
