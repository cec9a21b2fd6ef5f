//! The parts of a RunInstances request that follow from the pool's finer settings:
//! block devices (root volume and extra volumes), the network interface when a public
//! address is asked for or refused, the placement group.

use super::image::Image;
use crate::config::{Ec2Settings, Ec2Volume};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, InstanceNetworkInterfaceSpecification, Placement,
    VolumeType,
};

/// The block device mappings: the root volume as configured (when the image's root
/// device is known; its size is the image's unless configured) and every extra
/// volume. Every one is deleted with the instance.
pub fn block_devices(s: &Ec2Settings, image: &Image) -> Vec<BlockDeviceMapping> {
    let mut out = Vec::new();
    if let (true, Some(device)) = (s.shapes_root_volume(), &image.root_device) {
        let ebs = EbsBlockDevice::builder()
            .set_volume_size(s.volume_size.or(image.root_size))
            .set_volume_type(s.volume_type.as_deref().map(VolumeType::from))
            .set_encrypted(s.volume_encrypted.then_some(true))
            .set_kms_key_id(s.volume_kms_key_id.clone())
            .delete_on_termination(true)
            .build();
        out.push(
            BlockDeviceMapping::builder()
                .device_name(device)
                .ebs(ebs)
                .build(),
        );
    }
    out.extend(s.volumes.iter().map(extra_volume));
    out
}

fn extra_volume(v: &Ec2Volume) -> BlockDeviceMapping {
    let ebs = EbsBlockDevice::builder()
        .volume_size(v.size)
        .set_volume_type(v.kind.as_deref().map(VolumeType::from))
        .set_iops(v.iops)
        .set_throughput(v.throughput)
        .set_encrypted(v.encrypted.then_some(true))
        .set_kms_key_id(v.kms_key_id.clone())
        .delete_on_termination(true)
        .build();
    BlockDeviceMapping::builder()
        .device_name(&v.device)
        .ebs(ebs)
        .build()
}

/// With `public_ip` set, the instance's first network interface, which then carries
/// the subnet and security groups (EC2 refuses them beside an interface).
pub fn network_interface(
    s: &Ec2Settings,
    subnet: Option<&str>,
) -> Option<InstanceNetworkInterfaceSpecification> {
    let public = s.public_ip?;
    let groups = (!s.security_group_ids.is_empty()).then(|| s.security_group_ids.clone());
    Some(
        InstanceNetworkInterfaceSpecification::builder()
            .device_index(0)
            .associate_public_ip_address(public)
            .delete_on_termination(true)
            .set_subnet_id(subnet.map(str::to_owned))
            .set_groups(groups)
            .build(),
    )
}

pub fn placement(s: &Ec2Settings) -> Option<Placement> {
    let group = s.placement_group.as_ref()?;
    Some(Placement::builder().group_name(group).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> Ec2Settings {
        toml::from_str(&format!(
            "region = \"r\"\ninstance_type = \"t3.micro\"\nami = \"ami-1\"\n{extra}"
        ))
        .expect("settings")
    }

    fn image(root_device: Option<&str>) -> Image {
        Image {
            id: "ami-1".into(),
            root_device: root_device.map(str::to_owned),
            root_size: Some(8),
        }
    }

    #[test]
    fn the_root_volume_is_shaped_only_when_asked_and_known() {
        let xvda = image(Some("/dev/xvda"));
        assert!(block_devices(&settings(""), &xvda).is_empty());
        let s = settings("volume_encrypted = true\nvolume_type = \"gp3\"");
        assert!(
            block_devices(&s, &image(None)).is_empty(),
            "root device unknown"
        );
        let root = &block_devices(&s, &xvda)[0];
        assert_eq!(root.device_name(), Some("/dev/xvda"));
        let ebs = root.ebs().expect("ebs");
        assert_eq!(ebs.encrypted(), Some(true));
        assert_eq!(ebs.volume_type(), Some(&VolumeType::Gp3));
        assert_eq!(ebs.volume_size(), Some(8), "the image's size");
        assert_eq!(ebs.delete_on_termination(), Some(true));
    }

    #[test]
    fn extra_volumes_follow_the_root_and_die_with_the_instance() {
        let s = settings(
            "volume_size = 30\nvolumes = [{ device = \"/dev/sdf\", size = 100, type = \"io2\", \
             iops = 4000, encrypted = true, kms_key_id = \"alias/ci\" }, \
             { device = \"/dev/sdg\", size = 5 }]",
        );
        let all = block_devices(&s, &image(Some("/dev/sda1")));
        let devices: Vec<_> = all.iter().filter_map(|m| m.device_name()).collect();
        assert_eq!(devices, ["/dev/sda1", "/dev/sdf", "/dev/sdg"]);
        assert_eq!(all[0].ebs().and_then(|e| e.volume_size()), Some(30));
        let f = all[1].ebs().expect("ebs");
        assert_eq!(
            (f.volume_size(), f.iops(), f.encrypted(), f.kms_key_id()),
            (Some(100), Some(4000), Some(true), Some("alias/ci"))
        );
        let g = all[2].ebs().expect("ebs");
        assert_eq!((g.encrypted(), g.volume_type()), (None, None));
        assert!(all
            .iter()
            .all(|m| m.ebs().and_then(|e| e.delete_on_termination()) == Some(true)));
    }

    #[test]
    fn a_public_address_choice_moves_subnet_and_groups_onto_the_interface() {
        assert!(network_interface(&settings(""), Some("subnet-1")).is_none());
        let s = settings("public_ip = true\nsecurity_group_ids = [\"sg-1\"]");
        let nic = network_interface(&s, Some("subnet-1")).expect("interface");
        assert_eq!(nic.device_index(), Some(0));
        assert_eq!(nic.associate_public_ip_address(), Some(true));
        assert_eq!(nic.subnet_id(), Some("subnet-1"));
        assert_eq!(nic.groups(), ["sg-1"]);
        let off = network_interface(&settings("public_ip = false"), None).expect("interface");
        assert_eq!(off.associate_public_ip_address(), Some(false));
        assert!(placement(&settings("")).is_none());
        let p = placement(&settings("placement_group = \"ci\"")).expect("placement");
        assert_eq!(p.group_name(), Some("ci"));
    }
}
