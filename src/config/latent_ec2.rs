//! The finer `[latent_pool.ec2]` settings users ask for beyond image and type: the
//! image found again by name now and then, its architecture, the root volume's type
//! and encryption, extra volumes, a public address, a placement group — and their
//! checks.

use super::latent::Ec2Settings;
use serde::Deserialize;

/// Architectures EC2 images are published for (its `architecture` filter's values).
const ARCHITECTURES: [&str; 5] = ["x86_64", "arm64", "i386", "x86_64_mac", "arm64_mac"];

/// EBS volume types.
const VOLUME_TYPES: [&str; 7] = ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

/// Seconds between lookups of `ami_name` when not configured: a newly published
/// image reaches new instances within the hour.
#[cfg_attr(not(feature = "ec2"), allow(dead_code))]
pub const DEFAULT_AMI_REFRESH: u64 = 3600;

/// `[[latent_pool.ec2.volumes]]`: a volume beside the root one. It is always
/// deleted with its instance: nothing of a pool outlives it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ec2Volume {
    /// Where it is attached, e.g. `/dev/sdf`.
    pub device: String,
    /// GiB.
    pub size: i32,
    /// An EBS type (`gp3`, `io2`, ...); default: the cloud's.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub iops: Option<i32>,
    /// MiB/s (gp3).
    pub throughput: Option<i32>,
    #[serde(default)]
    pub encrypted: bool,
    /// A KMS key for the encryption; default: the account's EBS key.
    pub kms_key_id: Option<String>,
}

#[cfg_attr(not(feature = "ec2"), allow(dead_code))]
impl Ec2Settings {
    /// Seconds between lookups of the image by name; `None` for a fixed image id or
    /// `ami_refresh = 0` (found once).
    pub fn image_refresh(&self) -> Option<u64> {
        self.ami_name.as_ref()?;
        match self.ami_refresh.unwrap_or(DEFAULT_AMI_REFRESH) {
            0 => None,
            seconds => Some(seconds),
        }
    }

    /// Whether the root volume is set up here rather than left as the image has it
    /// (which needs the image's root device name).
    pub fn shapes_root_volume(&self) -> bool {
        self.volume_size.is_some()
            || self.volume_type.is_some()
            || self.volume_encrypted
            || self.volume_kms_key_id.is_some()
    }
}

/// Reports what is wrong with the finer settings through `wrong`.
pub(super) fn check(ec2: &Ec2Settings, wrong: &mut impl FnMut(&str)) {
    if let Some(arch) = &ec2.architecture {
        if !ARCHITECTURES.contains(&arch.as_str()) {
            wrong(&format!(
                "ec2.architecture is one of {ARCHITECTURES:?}, not {arch:?}"
            ));
        }
    }
    if ec2.ami_refresh.is_some() && ec2.ami_name.is_none() {
        wrong("ec2.ami_refresh is for an image found by ec2.ami_name");
    }
    if ec2.architecture.is_some() && ec2.ami_name.is_none() {
        wrong("ec2.architecture filters the images ec2.ami_name finds");
    }
    if let Some(kind) = &ec2.volume_type {
        check_type(kind, "ec2.volume_type", wrong);
    }
    if ec2.volume_kms_key_id.is_some() && !ec2.volume_encrypted {
        wrong("ec2.volume_kms_key_id needs ec2.volume_encrypted = true");
    }
    for (i, v) in ec2.volumes.iter().enumerate() {
        let at = format!("ec2.volumes[{i}]");
        let device_ok = v.device.starts_with("/dev/")
            && v.device.len() > "/dev/".len()
            && v.device
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'/');
        if !device_ok {
            wrong(&format!(
                "{at}.device is a device path such as \"/dev/sdf\", not {:?}",
                v.device
            ));
        }
        if ec2.volumes[..i].iter().any(|o| o.device == v.device) {
            wrong(&format!("{at}.device {:?} is named twice", v.device));
        }
        if !(1..=65_536).contains(&v.size) {
            wrong(&format!("{at}.size is in GiB, 1 to 65536"));
        }
        if let Some(kind) = &v.kind {
            check_type(kind, &format!("{at}.type"), wrong);
        }
        if v.iops.is_some_and(|n| n < 1) || v.throughput.is_some_and(|n| n < 1) {
            wrong(&format!("{at}: iops and throughput must be at least 1"));
        }
        if v.kms_key_id.is_some() && !v.encrypted {
            wrong(&format!("{at}.kms_key_id needs encrypted = true"));
        }
    }
    if ec2.placement_group.as_deref() == Some("") {
        wrong("ec2.placement_group is empty");
    }
}

fn check_type(kind: &str, at: &str, wrong: &mut impl FnMut(&str)) {
    if !VOLUME_TYPES.contains(&kind) {
        wrong(&format!("{at} is one of {VOLUME_TYPES:?}, not {kind:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> Ec2Settings {
        toml::from_str(&format!(
            "region = \"us-east-1\"\ninstance_type = \"t3.micro\"\n{extra}"
        ))
        .expect("settings")
    }

    fn problems(extra: &str) -> Vec<String> {
        let mut out = Vec::new();
        check(&settings(extra), &mut |m: &str| out.push(m.to_owned()));
        out
    }

    #[test]
    fn accepts_a_full_set_of_details() {
        let extra = "ami_name = \"deb-*\"\nami_owners = [\"self\"]\nami_refresh = 600\n\
            architecture = \"arm64\"\nvolume_size = 20\nvolume_type = \"gp3\"\n\
            volume_encrypted = true\npublic_ip = false\nplacement_group = \"ci\"\n\
            volumes = [{ device = \"/dev/sdf\", size = 100, type = \"io2\", iops = 4000, \
            encrypted = true, kms_key_id = \"alias/ci\" }]";
        assert_eq!(problems(extra), Vec::<String>::new());
        let s = settings(extra);
        assert_eq!(s.image_refresh(), Some(600));
        assert!(s.shapes_root_volume());
        assert_eq!(s.volumes[0].kind.as_deref(), Some("io2"));
    }

    #[test]
    fn refuses_wrong_details_each_with_its_reason() {
        let cases = [
            ("ami = \"ami-1\"\narchitecture = \"sparc\"", "ec2.architecture is one of"),
            ("ami = \"ami-1\"\nami_refresh = 60", "ami_refresh is for an image"),
            ("ami = \"ami-1\"\nvolume_type = \"ssd\"", "ec2.volume_type is one of"),
            ("ami = \"ami-1\"\nvolume_kms_key_id = \"k\"", "needs ec2.volume_encrypted"),
            (
                "ami = \"ami-1\"\nvolumes = [{ device = \"sdf; rm -rf /\", size = 1 }]",
                "is a device path",
            ),
            (
                "ami = \"ami-1\"\nvolumes = [{ device = \"/dev/sdf\", size = 1 }, { device = \"/dev/sdf\", size = 2 }]",
                "named twice",
            ),
            ("ami = \"ami-1\"\nvolumes = [{ device = \"/dev/sdf\", size = 0 }]", "1 to 65536"),
            (
                "ami = \"ami-1\"\nvolumes = [{ device = \"/dev/sdf\", size = 1, kms_key_id = \"k\" }]",
                "needs encrypted = true",
            ),
            ("ami = \"ami-1\"\nplacement_group = \"\"", "placement_group is empty"),
        ];
        for (extra, want) in cases {
            let found = problems(extra);
            assert!(found.iter().any(|m| m.contains(want)), "{extra}: {found:?}");
        }
    }

    #[test]
    fn an_image_by_id_or_refresh_zero_is_found_once() {
        assert_eq!(settings("ami = \"ami-1\"").image_refresh(), None);
        let by_name = "ami_name = \"deb-*\"\nami_owners = [\"self\"]";
        assert_eq!(settings(by_name).image_refresh(), Some(DEFAULT_AMI_REFRESH));
        assert_eq!(
            settings(&format!("{by_name}\nami_refresh = 0")).image_refresh(),
            None
        );
        assert!(!settings(by_name).shapes_root_volume());
    }
}
