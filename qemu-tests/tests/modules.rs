//! Device-driven module loading without udev: coldplug loads the driver of a device present
//! at boot, hotplug the driver of a device added to the running guest (QEMU's `device_add`).
//! The device is a virtio RNG, whose driver (`virtio_rng`) the image carries but does not
//! list in `[modules] load`, so only the device can have caused the load. Needs the test
//! image (`make image-test`).

use std::time::{Duration, Instant};

use anyhow::Result;
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::{Image, Vm};

const READY: &str = r"berth-init: berth ready";

fn module_is_live(vm: &mut Vm) -> Result<bool> {
    let mut agent = vm.agent()?;
    Ok(agent
        .read_file("/sys/module/virtio_rng/initstate")
        .map(|text| text.starts_with(b"live"))
        .unwrap_or(false))
}

#[test]
fn coldplug_loads_the_driver_of_a_device_present_at_boot() -> Result<()> {
    let image = Image::test_image()?;
    let mut vm = Vm::builder("coldplug")
        .image(&image)
        .args(["-device", "virtio-rng-pci,id=rng0"])
        .spawn()?;
    let line = vm.wait_for_line(r"coldplug: loaded .*virtio_rng", BOOT_TIMEOUT)?;
    println!("{line}");
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let live = module_is_live(&mut vm)?;
    vm.check(live, "virtio_rng is not live in the guest")?;
    Ok(())
}

#[test]
fn hotplug_loads_the_driver_of_a_device_added_later() -> Result<()> {
    let image = Image::test_image()?;
    let mut vm = Vm::builder("hotplug").image(&image).spawn()?;
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let live = module_is_live(&mut vm)?;
    vm.check(
        !live,
        "virtio_rng already loaded before any RNG device exists",
    )?;
    let added = Instant::now();
    let reply = vm.monitor("device_add virtio-rng-pci,id=rng1")?;
    vm.check(reply.trim().is_empty(), format!("device_add said: {reply}"))?;
    let line = vm.wait_for_line(r"hotplug: loaded .*virtio_rng", Duration::from_secs(90))?;
    println!("{line}");
    println!(
        "device_add -> driver loaded: {:.2} s",
        added.elapsed().as_secs_f64()
    );
    let live = module_is_live(&mut vm)?;
    vm.check(live, "virtio_rng is not live after the hotplug")?;
    Ok(())
}
