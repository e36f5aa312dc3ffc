//! Choosing where burn runs: `cpu` (burn's flex backend), `wgpu` (a GPU, or Mesa's lavapipe on a
//! CPU-only machine), or `auto` (a real GPU adapter when one exists, flex otherwise). The choice
//! and the adapter are reported with every run.

use burn::prelude::*;
use burn::tensor::wgpu::wgpu;
use serde::{Deserialize, Serialize};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Wgpu,
    Cpu,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "wgpu" => Ok(Self::Wgpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!("device `{other}`: expected auto, wgpu or cpu")),
        }
    }
}

/// One wgpu adapter the machine offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adapter {
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub kind: String,
    pub backend: String,
    pub driver: String,
}

impl Adapter {
    pub fn is_gpu(&self) -> bool {
        matches!(self.kind.as_str(), "DiscreteGpu" | "IntegratedGpu" | "VirtualGpu")
    }
}

/// The wgpu adapters visible here (an empty list when there is no Vulkan/Metal/GL driver).
pub fn adapters() -> Vec<Adapter> {
    let instance = wgpu::Instance::default();
    let found = futures_executor::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    found
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            Adapter { name: info.name, kind: format!("{:?}", info.device_type), backend: format!("{:?}", info.backend), driver: info.driver }
        })
        .collect()
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

/// Resolves a choice into a device, or says why it cannot.
pub fn select(choice: DeviceChoice) -> Result<LabDevice, String> {
    let cpu = || LabDevice { device: Device::flex().autodiff(), backend: "cpu", adapter: format!("burn flex, {} threads", threads()) };
    let wgpu_on = |a: &Adapter| {
        let kind = match a.kind.as_str() {
            "DiscreteGpu" => DeviceKind::DiscreteGpu(0),
            "IntegratedGpu" => DeviceKind::IntegratedGpu(0),
            "VirtualGpu" => DeviceKind::VirtualGpu(0),
            _ => DeviceKind::Cpu,
        };
        LabDevice { device: Device::wgpu(kind).autodiff(), backend: "wgpu", adapter: format!("{} [{}, {}, {}]", a.name, a.kind, a.backend, a.driver) }
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Auto => Ok(best_gpu(&adapters()).map_or_else(cpu, wgpu_on)),
        DeviceChoice::Wgpu => {
            let found = adapters();
            best_gpu(&found)
                .or_else(|| found.first())
                .map(wgpu_on)
                .ok_or_else(|| "no wgpu adapter: install a GPU driver, or Mesa's lavapipe (apt-get install mesa-vulkan-drivers)".to_string())
        }
    }
}

/// A discrete GPU first, then any other real GPU.
fn best_gpu(found: &[Adapter]) -> Option<&Adapter> {
    found.iter().find(|a| a.kind == "DiscreteGpu").or_else(|| found.iter().find(|a| a.is_gpu()))
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
