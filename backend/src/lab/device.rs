//! Choosing where burn runs: `cpu` (burn's flex backend), `wgpu` (a GPU, or Mesa's lavapipe on a
//! CPU-only machine), or `auto` (a real GPU adapter when one exists, flex otherwise). The choice
//! and the adapter are reported with every run.

use burn::prelude::*;
use burn::tensor::wgpu::wgpu;
use p2law_kernels::adapter;
use serde::{Deserialize, Serialize};

/// What the user asked for (the shared vocabulary, so the request, the CLI and the runner agree).
pub use p2law_shared::calibrate::DeviceChoice;

/// One wgpu adapter the machine offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adapter {
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub kind: String,
    pub backend: String,
    pub driver: String,
}

/// The wgpu adapters visible here, best first (an empty list when there is no Vulkan/Metal/GL
/// driver).
/// Enumerated once per process (a wgpu instance takes a fraction of a second to list them, and
/// `GET /api/lab` asks on every page load).
pub fn adapters() -> Vec<Adapter> {
    static FOUND: std::sync::OnceLock<Vec<Adapter>> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| adapter::adapters().iter().map(Adapter::from).collect()).clone()
}

impl From<&wgpu::AdapterInfo> for Adapter {
    fn from(info: &wgpu::AdapterInfo) -> Self {
        Adapter { name: info.name.clone(), kind: format!("{:?}", info.device_type), backend: format!("{:?}", info.backend), driver: info.driver.clone() }
    }
}

/// The device a run trains on.
#[derive(Debug, Clone)]
pub struct LabDevice {
    /// With autodiff, for training.
    pub device: Device,
    /// `cpu` (flex) or `wgpu`.
    pub backend: &'static str,
    /// What ran it: the adapter, or the CPU backend's name.
    pub adapter: String,
}

impl LabDevice {
    pub fn describe(&self) -> String {
        format!("{} ({})", self.backend, self.adapter)
    }
}

/// A device that cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("no wgpu adapter: install a GPU driver, or Mesa's lavapipe (apt-get install mesa-vulkan-drivers)")]
    NoAdapter,
}

/// Resolves a choice into a device, or says why it cannot.
pub fn select(choice: DeviceChoice) -> Result<LabDevice, DeviceError> {
    let cpu = || LabDevice { device: Device::flex().autodiff(), backend: "cpu", adapter: format!("burn flex, {} threads", threads()) };
    let wgpu_on = |a: &wgpu::AdapterInfo| LabDevice { device: adapter::device_on(a).autodiff(), backend: "wgpu", adapter: adapter::describe(a) };
    // Adapters are enumerated only when a choice needs them: `cpu` never loads a Vulkan driver
    // (which costs start-up time, and Mesa's complains on stderr where no display session is set).
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Auto => Ok(adapter::adapters().iter().find(|a| adapter::is_gpu(a)).map_or_else(cpu, wgpu_on)),
        // The list is best first: a real GPU when there is one, otherwise lavapipe.
        DeviceChoice::Wgpu => adapter::adapters()
            .first()
            .map(wgpu_on)
            .ok_or(DeviceError::NoAdapter),
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
