//! The generic kernel flavour (`[kernel] flavour = "generic"`, for bare metal) resolves through
//! apt, downloads, unpacks and indexes like the cloud one, and carries the drivers the cloud
//! flavour lacks. The first run downloads `linux-image-<version>-amd64` (~70 MB) from Debian's
//! archive into the kernel cache (`$BERTH_CACHE_DIR`, else `/var/cache/berth`); later runs use
//! the cache (a few seconds). Needs apt-get, dpkg-deb and depmod (scripts/install-deps.sh).

use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_image::definition::{ImageDefinition, KernelFlavour, ModuleName};
use berth_image::kernel;
use berth_image::modules::ModuleIndex;

fn cache_dir() -> PathBuf {
    std::env::var_os("BERTH_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth"))
}

/// Bare-metal drivers: Intel 1G/10G NICs, Realtek NICs, SATA AHCI.
const METAL_DRIVERS: [&str; 4] = ["e1000e", "igb", "r8169", "ahci"];

#[test]
fn generic_flavour_resolves_and_has_bare_metal_drivers() -> anyhow::Result<()> {
    let def = ImageDefinition::parse(
        "[kernel]\nflavour = \"generic\"\n",
        Path::new("generic.toml"),
    )?;
    assert_eq!(def.kernel.package.as_str(), "linux-image-amd64");

    let started = Instant::now();
    let generic = kernel::from_apt(def.kernel.package.as_str(), &cache_dir())?;
    println!(
        "generic kernel {} ({} {}) ready in {:.1} s",
        generic.meta.release,
        generic.meta.package.as_deref().unwrap_or("?"),
        generic.meta.version.as_deref().unwrap_or("?"),
        started.elapsed().as_secs_f64()
    );
    let release = &generic.meta.release;
    assert!(
        release.ends_with("-amd64") && !release.contains("cloud"),
        "the generic flavour resolved to {release}"
    );
    assert!(generic.vmlinuz.is_file());
    assert_eq!(
        generic.meta.package.as_deref(),
        Some(format!("linux-image-{release}").as_str())
    );

    // The drivers resolve with their dependencies, as `root.modules` would ask for them.
    let index = ModuleIndex::load(&generic.modules_dir)?;
    let wanted: Vec<ModuleName> = METAL_DRIVERS.iter().map(|m| ModuleName::from(*m)).collect();
    let set = index.closure(&wanted, "root.modules", Path::new("generic.toml"))?;
    let names = set.names();
    for driver in METAL_DRIVERS {
        assert!(
            names.iter().any(|n| n == driver) || set.builtin.iter().any(|b| b == driver),
            "{driver} missing from the generic kernel: {names:?}"
        );
    }
    println!("bare-metal drivers with dependencies: {names:?}");

    // The cloud flavour (default, for VMs) indeed lacks them, which is why the choice exists.
    // It is in the cache whenever an image was built; only then is it compared.
    let cloud_def = ImageDefinition::parse("", Path::new("cloud.toml"))?;
    assert_eq!(cloud_def.kernel.flavour, KernelFlavour::Cloud);
    match kernel::from_apt(cloud_def.kernel.package.as_str(), &cache_dir()) {
        Ok(cloud) => {
            let cloud_index = ModuleIndex::load(&cloud.modules_dir)?;
            let err = cloud_index
                .closure(&wanted, "root.modules", Path::new("cloud.toml"))
                .expect_err("the cloud flavour has no bare-metal NIC drivers");
            println!("cloud flavour {}: {err}", cloud.meta.release);
        }
        Err(err) => println!("cloud flavour not compared: {err}"),
    }
    Ok(())
}
