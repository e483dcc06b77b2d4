//! `berth.services.images.v1.Images`.

use std::sync::Arc;

use async_trait::async_trait;
use ttrpc::r#async::TtrpcContext;

use super::{blocking, digest, invalid, namespace, nanos, status, Storage};
use berth_api::proto::{images as pb, images_ttrpc};
use crate::metadata::{Descriptor, Image};

pub(super) struct Service(pub Arc<Storage>);

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

fn from_pb(i: pb::Image) -> ttrpc::Result<Image> {
    let t = i
        .target
        .into_option()
        .ok_or_else(|| invalid(format!("image {:?}: target must be set", i.name)))?;
    let size = u64::try_from(t.size)
        .map_err(|_| invalid(format!("image {:?}: negative target size", i.name)))?;
    let target = Descriptor {
        media_type: t.media_type,
        digest: digest("image target digest", &t.digest)?,
        size,
        annotations: t.annotations.into_iter().collect(),
    };
    Ok(Image::new(i.name, target, i.labels.into_iter().collect()))
}

#[async_trait]
impl images_ttrpc::Images for Service {
    async fn get(
        &self,
        ctx: &TtrpcContext,
        req: pb::GetImageRequest,
    ) -> ttrpc::Result<pb::GetImageResponse> {
        let ns = namespace(ctx)?;
        let i = blocking(|| self.0.db.images().get(&ns, &req.name)).map_err(status)?;
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
        let list = blocking(|| self.0.db.images().list(&ns)).map_err(status)?;
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
        let i = blocking(|| self.0.db.images().create(&ns, image)).map_err(status)?;
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
        let mut pb_image = req.image.into_option().unwrap_or_default();
        if pb_image.target.is_none() {
            // A labels-only update may omit the target: the stored one stands in (the
            // database ignores it unless the mask names "target").
            let current =
                blocking(|| self.0.db.images().get(&ns, &pb_image.name)).map_err(status)?;
            pb_image.target = to_pb(current).target;
        }
        let image = from_pb(pb_image)?;
        let i =
            blocking(|| self.0.db.images().update(&ns, image, &req.update_mask)).map_err(status)?;
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
        blocking(|| self.0.db.images().delete(&ns, &req.name)).map_err(status)?;
        if req.sync {
            blocking(|| self.0.collect()).map_err(status)?;
        } else {
            self.0.gc.request();
        }
        Ok(pb::DeleteImageResponse::default())
    }
}
