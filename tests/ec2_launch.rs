//! What an ec2 pool asks of RunInstances beyond image and type, against moto through
//! the fault-injecting proxy (which keeps the requests) with each instance booted by
//! running its user data locally, so a real buildbot-worker 4.3.0 builds: the image
//! found by name and architecture, found again when a newer one is published; an
//! encrypted root volume and an extra volume, both gone with the instance; a public
//! address on the first interface; a placement group. Build with `--features ec2`.
#![cfg(feature = "ec2")]

mod support;

use support::ec2::BootPolicy;
use support::ec2_cloud::{start_master_with, wait_all_ended, Cloud, LONG};
use support::master::test_dir;

/// Publishes an image named `name` in the emulator's own account (made from an
/// instance of a stock image of that architecture, since the emulator keeps the
/// architecture only so); returns its id.
fn publish(cloud: &Cloud, name: &str, arch: &str) -> String {
    let stock = first(
        &cloud.moto.call(&[
            ("Action", "DescribeImages"),
            ("Filter.1.Name", "architecture"),
            ("Filter.1.Value.1", arch),
        ]),
        "imageId",
    );
    let instance = first(
        &cloud.moto.call(&[
            ("Action", "RunInstances"),
            ("ImageId", &stock),
            ("MinCount", "1"),
            ("MaxCount", "1"),
        ]),
        "instanceId",
    );
    let image = first(
        &cloud.moto.call(&[
            ("Action", "CreateImage"),
            ("InstanceId", &instance),
            ("Name", name),
        ]),
        "imageId",
    );
    cloud.moto.terminate(&instance);
    image
}

/// The first `<tag>` element's text.
fn first(xml: &str, tag: &str) -> String {
    xml.split(&format!("<{tag}>"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{tag}>")).next())
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        .to_owned()
}

/// The pool's instances, in launch order.
fn pool_instances(cloud: &Cloud) -> Vec<String> {
    cloud
        .moto
        .instances()
        .into_iter()
        .filter(|i| i.tags.get("pbmaster:pool").is_some_and(|p| p == "cloud"))
        .map(|i| i.id)
        .collect()
}

/// The image an instance was launched from.
fn image_of(cloud: &Cloud, instance: &str) -> String {
    first(
        &cloud
            .moto
            .call(&[("Action", "DescribeInstances"), ("InstanceId.1", instance)]),
        "imageId",
    )
}

fn volumes(cloud: &Cloud) -> String {
    cloud.moto.call(&[("Action", "DescribeVolumes")])
}

#[test]
fn images_volumes_address_and_placement_are_asked_for_and_images_found_again() {
    let dir = test_dir("ec2-launch");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    let first_image = publish(&cloud, "pbmaster-test-1", "x86_64");
    // Newer, but for another architecture: never chosen.
    let arm = publish(&cloud, "pbmaster-test-9", "arm64");
    // A builder whose build lasts until the test lets it end.
    let release = dir.join("release");
    let hold = format!(
        "\n[[builder]]\nname = \"hold\"\nworkers = [\"cloud\"]\n\n[[builder.step]]\n\
         command = \"while [ ! -e '{}' ]; do sleep 0.1; done\"\n",
        release.display()
    );
    let master = start_master_with(
        &dir,
        &cloud,
        "build_wait_timeout = 0",
        "ami_name = \"pbmaster-test-*\"\nami_owners = [\"self\"]\narchitecture = \"x86_64\"\n\
         ami_refresh = 1\nvolume_encrypted = true\nvolume_type = \"gp3\"\n\
         volumes = [{ device = \"/dev/sdf\", size = 20, type = \"gp3\", encrypted = true }]\n\
         public_ip = true\nplacement_group = \"ci\"",
        &hold,
    );

    let held = master.force("hold");
    master.wait_running_build(held, LONG);
    let launched = pool_instances(&cloud);
    assert_eq!(launched.len(), 1, "{launched:?}");
    assert_eq!(image_of(&cloud, &launched[0]), first_image);
    assert_ne!(first_image, arm);

    // Asked as configured (the emulator does not keep all of it: the request is read).
    let requests = cloud.proxy.bodies("RunInstances");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let asked = &requests[0];
    for part in [
        "Placement.GroupName=ci",
        "NetworkInterface.1.DeviceIndex=0",
        "NetworkInterface.1.AssociatePublicIpAddress=true",
        // The image's root device (the emulator makes images with this one).
        "BlockDeviceMapping.1.DeviceName=%2Fdev%2Fsda1",
        "BlockDeviceMapping.1.Ebs.Encrypted=true",
        "BlockDeviceMapping.1.Ebs.VolumeType=gp3",
        "BlockDeviceMapping.1.Ebs.DeleteOnTermination=true",
        "BlockDeviceMapping.2.DeviceName=%2Fdev%2Fsdf",
        "BlockDeviceMapping.2.Ebs.VolumeSize=20",
        "BlockDeviceMapping.2.Ebs.Encrypted=true",
        "BlockDeviceMapping.2.Ebs.DeleteOnTermination=true",
    ] {
        assert!(asked.contains(part), "{part} not in {asked}");
    }
    // The subnet and groups go on the interface, never beside it.
    assert!(!asked.contains("SecurityGroupId."), "{asked}");
    // The extra volume exists, encrypted, while the instance lives.
    let v = volumes(&cloud);
    assert!(
        v.contains("<size>20</size>") && v.contains("<encrypted>true</encrypted>"),
        "{v}"
    );
    std::fs::write(&release, "").expect("release");
    let r = master.wait_request(held, LONG);
    assert_eq!(r["result"], "success", "{r}\n{}", master.log());

    // A newer image is published: once the refresh time has passed, the next
    // instance uses it.
    let ended = wait_all_ended(&master);
    assert_eq!(ended.len(), 1, "{ended:?}");
    let second = publish(&cloud, "pbmaster-test-2", "x86_64");
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "success", "{r}\n{}", master.log());
    let now = pool_instances(&cloud);
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(image_of(&cloud, &now[1]), second, "{}", master.log());
    assert!(
        master.log().contains("a newer image matches"),
        "{}",
        master.log()
    );

    // Every instance ended, and its volumes with it.
    wait_all_ended(&master);
    cloud.wait_none_alive("cloud");
    support::wait::until("the volumes to go", LONG, || {
        !volumes(&cloud).contains("<volumeId>")
    });
}
