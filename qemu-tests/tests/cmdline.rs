//! Configuration from the kernel command line (`berth.<dotted.key>=<value>`), layered over
//! `/etc/berth/init.toml`: good keys apply, each bad one is one console line and is skipped, and
//! the node still comes up. Needs the test image (`make image-test`).

use anyhow::Result;
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::{Image, Vm};

#[test]
fn bad_berth_key_on_the_command_line_is_one_line_and_the_rest_applies() -> Result<()> {
    let image = Image::test_image()?;
    let mut vm = Vm::builder("cmdline")
        .image(&image)
        .append("berth.berthd.max_failures=x berth.no.such_key=1 berth.console.level=debug")
        .spawn()?;
    let bad_value = vm.wait_for_line(
        r"kernel command line: berth\.berthd\.max_failures=x",
        BOOT_TIMEOUT,
    )?;
    println!("{bad_value}");
    let unknown = vm.wait_for_line(r"kernel command line: berth\.no\.such_key=1", BOOT_TIMEOUT)?;
    println!("{unknown}");
    let ready = vm.wait_for_line(r"berth-init: berth ready", BOOT_TIMEOUT)?;
    println!("{ready}");
    let console = vm.console_text();
    vm.check(
        bad_value.contains("expected an unsigned integer") && bad_value.ends_with("; ignored"),
        format!("unclear error line: {bad_value:?}"),
    )?;
    vm.check(
        unknown.contains("unknown key"),
        format!("unknown key not called so: {unknown:?}"),
    )?;
    vm.check(
        console.matches("berth.berthd.max_failures=x").count() == 1,
        "the bad argument is reported more than once",
    )?;
    // berth.console.level=debug applied although its neighbours were bad: init's debug lines show.
    vm.check(
        console.contains("berth-init: mounted tmpfs on /run"),
        "berth.console.level=debug did not take effect",
    )?;
    Ok(())
}
