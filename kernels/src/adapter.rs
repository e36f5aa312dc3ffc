//! Finding a wgpu adapter, and what a test that needs one does without it: the machine's
//! adapters best first, the burn device on one, and the skip policy (`P2LAW_REQUIRE_WGPU=1` makes a
//! missing adapter a failure; elsewhere the skip is said and counted).

use burn::prelude::*;
use burn::tensor::wgpu::wgpu;

/// The wgpu adapters this machine offers, best first: discrete, integrated and virtual GPUs,
/// then the rest (Mesa's lavapipe on a CPU-only machine). Empty where wgpu finds no driver.
pub fn adapters() -> Vec<wgpu::AdapterInfo> {
    let instance = wgpu::Instance::default();
    let found = futures_executor::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let mut infos: Vec<wgpu::AdapterInfo> = found.iter().map(|a| a.get_info()).collect();
    infos.sort_by_key(|i| match i.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        _ => 3,
    });
    infos
}

/// Whether an adapter is a real GPU (not a CPU driver such as lavapipe).
pub fn is_gpu(info: &wgpu::AdapterInfo) -> bool {
    matches!(info.device_type, wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::VirtualGpu)
}

/// The burn device on an adapter.
pub fn device_on(info: &wgpu::AdapterInfo) -> Device {
    Device::wgpu(match info.device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(0),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(0),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(0),
        _ => DeviceKind::Cpu,
    })
}

/// An adapter in one line: name, type, graphics API and driver.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} [{:?}, {:?}, {}]", info.name, info.device_type, info.backend, info.driver)
}

/// The variable that makes a missing adapter a test failure: `.ci/run` sets it, since
/// `./dev setup` installs Mesa's lavapipe, so a green CI run always holds the wgpu tests.
pub const REQUIRE_WGPU: &str = "P2LAW_REQUIRE_WGPU";

/// What a test that needs a wgpu adapter does when there is none. With `P2LAW_REQUIRE_WGPU=1` it
/// fails, naming the test and the reason. Elsewhere the skip is never silent: it is said on
/// stderr and appended to `wgpu-skips.log` in the target directory, which `./dev test` counts
/// and prints after the run (libtest hides a passing test's output).
pub fn skip_without_adapter(test: &str) {
    let reason = "no wgpu adapter on this machine (install mesa-vulkan-drivers for lavapipe; ./dev setup does)";
    if std::env::var(REQUIRE_WGPU).is_ok_and(|v| v == "1") {
        panic!("{test}: {REQUIRE_WGPU}=1 but {reason}");
    }
    eprintln!("SKIPPED {test}: {reason}");
    // The test binary lives in <target>/<profile>/deps/.
    let target = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).or_else(|| {
        std::env::current_exe().ok().and_then(|e| e.parent()?.parent()?.parent().map(std::path::Path::to_path_buf))
    });
    if let Some(dir) = target {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("wgpu-skips.log")) {
            let _ = writeln!(f, "{test}: {reason}");
        }
    }
}

/// The best wgpu device (see [`adapters`]) and its description; `None` without an adapter.
pub fn wgpu_device() -> Option<(Device, String)> {
    let best = adapters().into_iter().next()?;
    Some((device_on(&best), describe(&best)))
}

#[cfg(test)]
mod skip_tests {
    use super::*;

    /// Runs this test binary again on one test, with `env`, and returns (success, stderr).
    fn child(test: &str, env: &[(&str, &str)]) -> (bool, String) {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = std::process::Command::new(exe);
        cmd.args([test, "--exact", "--nocapture", "--test-threads", "1"]).env_remove(REQUIRE_WGPU);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("test binary runs");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Stands for a wgpu test on a machine without an adapter; run only as a child of the test below.
    #[test]
    fn skip_child() {
        if std::env::var_os("P2LAW_SKIP_CHILD").is_some() {
            skip_without_adapter("a wgpu test");
        }
    }

    #[test]
    fn a_missing_adapter_fails_where_required_and_is_recorded_elsewhere() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().to_str().unwrap();
        let (ok, err) = child("adapter::skip_tests::skip_child", &[("P2LAW_SKIP_CHILD", "1"), (REQUIRE_WGPU, "1"), ("CARGO_TARGET_DIR", target)]);
        assert!(!ok, "P2LAW_REQUIRE_WGPU=1 must fail the test: {err}");
        assert!(err.contains("a wgpu test: P2LAW_REQUIRE_WGPU=1 but no wgpu adapter"), "{err}");
        assert!(!dir.path().join("wgpu-skips.log").exists());
        let (ok, err) = child("adapter::skip_tests::skip_child", &[("P2LAW_SKIP_CHILD", "1"), ("CARGO_TARGET_DIR", target)]);
        assert!(ok, "{err}");
        assert!(err.contains("SKIPPED a wgpu test"), "{err}");
        let log = std::fs::read_to_string(dir.path().join("wgpu-skips.log")).expect("the skip is recorded");
        assert!(log.starts_with("a wgpu test: no wgpu adapter"), "{log}");
    }
}
