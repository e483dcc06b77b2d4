//! `berth.services.images.v1.Images`: image records of the request's namespace.

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::errdefs::{self, invalid};
use berth_api::proto::{images as pb, images_ttrpc};
use berth_api::time::nanos;
use berth_engine::metadata::{Descriptor, Image};
use berth_engine::store::{ops::ImageUpdate, Store};
use ttrpc::r#async::TtrpcContext;

use super::content::digest;
use super::{blocking, namespace};

/// `berth.services.images.v1.Images`.
pub struct ImagesService(pub Arc<Store>);

/// The wire form of an image.
pub fn to_pb(i: Image) -> pb::Image {
    pb::Image {
        name: i.name,
        labels: i.labels.into_iter().collect(),
        target: Some(pb::Descriptor {
            media_type: i.target.media_type,
            digest: i.target.digest.to_string(),
            size: i64::try_from(i.target.size).unwrap_or(i64::MAX),
            annotations: i.target.annotations.into_iter().collect(),
            ..Default::default()
        })
        .into(),
        created_at: nanos(i.created_at),
        updated_at: nanos(i.updated_at),
        ..Default::default()
    }
}

fn target(name: &str, t: pb::Descriptor) -> ttrpc::Result<Descriptor> {
    let size = u64::try_from(t.size)
        .map_err(|_| invalid(format!("image {name:?}: negative target size")))?;
    Ok(Descriptor {
        media_type: t.media_type,
        digest: digest("image target digest", &t.digest)?,
        size,
        annotations: t.annotations.into_iter().collect(),
    })
}

fn from_pb(i: pb::Image) -> ttrpc::Result<Image> {
    let t = i
        .target
        .into_option()
        .ok_or_else(|| invalid(format!("image {:?}: target must be set", i.name)))?;
    let target = target(&i.name, t)?;
    Ok(Image::new(i.name, target, i.labels.into_iter().collect()))
}

#[async_trait]
impl images_ttrpc::Images for ImagesService {
    async fn get(
        &self,
        ctx: &TtrpcContext,
        req: pb::GetImageRequest,
    ) -> ttrpc::Result<pb::GetImageResponse> {
        let ns = namespace(ctx)?;
        let i =
            blocking(|| self.0.db.images().get(&ns, &req.name)).map_err(|e| errdefs::status(&e))?;
        Ok(pb::GetImageResponse {
            image: Some(to_pb(i)).into(),
            ..Default::default()
        })
    }

    async fn list(
        &self,
        ctx: &TtrpcContext,
        _req: pb::ListImagesRequest,
    ) -> ttrpc::Result<pb::ListImagesResponse> {
        let ns = namespace(ctx)?;
        let list = blocking(|| self.0.db.images().list(&ns)).map_err(|e| errdefs::status(&e))?;
        Ok(pb::ListImagesResponse {
            images: list.into_iter().map(to_pb).collect(),
            ..Default::default()
        })
    }

    async fn create(
        &self,
        ctx: &TtrpcContext,
        req: pb::CreateImageRequest,
    ) -> ttrpc::Result<pb::CreateImageResponse> {
        let ns = namespace(ctx)?;
        let image = from_pb(req.image.into_option().unwrap_or_default())?;
        let i =
            blocking(|| self.0.db.images().create(&ns, image)).map_err(|e| errdefs::status(&e))?;
        Ok(pb::CreateImageResponse {
            image: Some(to_pb(i)).into(),
            ..Default::default()
        })
    }

    async fn update(
        &self,
        ctx: &TtrpcContext,
        req: pb::UpdateImageRequest,
    ) -> ttrpc::Result<pb::UpdateImageResponse> {
        let ns = namespace(ctx)?;
        let i = req.image.into_option().unwrap_or_default();
        // A labels-only update may omit the target: the core keeps the stored one.
        let update = ImageUpdate {
            target: match i.target.into_option() {
                Some(t) => Some(target(&i.name, t)?),
                None => None,
            },
            name: i.name,
            labels: i.labels.into_iter().collect(),
        };
        let i = blocking(|| self.0.update_image(&ns, update, &req.update_mask))
            .map_err(|e| errdefs::status(&e))?;
        Ok(pb::UpdateImageResponse {
            image: Some(to_pb(i)).into(),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        req: pb::DeleteImageRequest,
    ) -> ttrpc::Result<pb::DeleteImageResponse> {
        let ns = namespace(ctx)?;
        blocking(|| self.0.delete_image(&ns, &req.name, req.sync))
            .map_err(|e| errdefs::status(&e))?;
        Ok(pb::DeleteImageResponse::default())
    }
}
