//! The image catalog: what VMs boot. Provider admins add and retire images; every signed-in
//! user reads the active ones. A launch records the image's name and file, so retiring an
//! image changes nothing for the instances that booted it.

use portal_types::ids::ImageUuid;
use portal_types::views::ImageView;
use portal_types::{Error, params};

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;

/// The images a new installation starts with: the tiny test guest the real-host tests boot
/// (a kernel and a busybox initramfs), then Ubuntu with CUDA for the GPU fleet; the last is
/// the newest, which launches that name no image get.
pub(crate) fn default_images() -> Vec<params::ImageCreate> {
    let ubuntu = |release: &str, cuda: &str, driver: &str| params::ImageCreate {
        name: format!("ubuntu-{release}-cuda-{cuda}"),
        os: format!("Ubuntu {release} LTS"),
        cuda_version: cuda.to_owned(),
        driver_version: driver.to_owned(),
        default_user: "ubuntu".to_owned(),
        source: format!("ubuntu-{release}-cuda-{cuda}.qcow2"),
    };
    vec![
        params::ImageCreate {
            name: "tiny-test".to_owned(),
            os: "Busybox test guest".to_owned(),
            cuda_version: String::new(),
            driver_version: String::new(),
            default_user: "root".to_owned(),
            source: "tiny-test.qcow2".to_owned(),
        },
        ubuntu("22.04", "12.4", "550"),
        ubuntu("24.04", "12.8", "570"),
    ]
}

impl Controller {
    /// The active images, newest first (with the retired ones for provider admins who ask).
    pub async fn image_list(
        &self,
        opctx: &OpContext,
        with_retired: bool,
    ) -> Result<Vec<ImageView>, Error> {
        opctx.authorize(Action::CatalogRead)?;
        let with_retired = with_retired && opctx.authorize(Action::CatalogWrite).is_ok();
        Ok(self.datastore.image_list(opctx, with_retired).await?)
    }

    pub async fn image_create(
        &self,
        opctx: &OpContext,
        create: &params::ImageCreate,
    ) -> Result<ImageView, Error> {
        let result = self.image_create_unaudited(opctx, create).await;
        self.audited(opctx, "image.create", "image", &create.name, result).await
    }

    async fn image_create_unaudited(
        &self,
        opctx: &OpContext,
        create: &params::ImageCreate,
    ) -> Result<ImageView, Error> {
        opctx.authorize(Action::CatalogWrite)?;
        create.validate()?;
        Ok(self.datastore.image_create(opctx, create).await?)
    }

    /// Retires an image (idempotent): no new launches boot it.
    pub async fn image_retire(&self, opctx: &OpContext, id: ImageUuid) -> Result<ImageView, Error> {
        let result = self.image_retire_unaudited(opctx, id).await;
        self.audited(opctx, "image.retire", "image", &id.to_string(), result).await
    }

    async fn image_retire_unaudited(
        &self,
        opctx: &OpContext,
        id: ImageUuid,
    ) -> Result<ImageView, Error> {
        opctx.authorize(Action::CatalogWrite)?;
        Ok(self.datastore.image_retire(opctx, id).await?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_images_are_valid_and_ubuntu_24_04_is_the_default() {
        let images = super::default_images();
        for image in &images {
            image.validate().unwrap();
        }
        assert_eq!(images.last().unwrap().name, "ubuntu-24.04-cuda-12.8");
    }
}
