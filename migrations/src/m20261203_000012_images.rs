//! The image catalog (what a VM boots: a file in the hosts' image store), and the image each
//! instance booted, recorded at launch like its instance type.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Image::Table)
                    .col(uuid(Image::Id).primary_key())
                    .col(string_uniq(Image::Name))
                    .col(string(Image::Os))
                    .col(string(Image::CudaVersion))
                    .col(string(Image::DriverVersion))
                    .col(string(Image::DefaultUser))
                    .col(string(Image::Source))
                    .col(boolean(Image::Retired))
                    .col(big_integer(Image::CreatedAt))
                    .col(big_integer(Image::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Instance::Table)
                    .add_column(string_null(Instance::Image))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Instance::Table)
                    .add_column(string_null(Instance::ImageSource))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Instance::Image, Instance::ImageSource] {
            manager
                .alter_table(Table::alter().table(Instance::Table).drop_column(column).to_owned())
                .await?;
        }
        manager.drop_table(Table::drop().table(Image::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Image {
    Table,
    Id,
    Name,
    Os,
    CudaVersion,
    DriverVersion,
    DefaultUser,
    Source,
    Retired,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Instance {
    Table,
    Image,
    ImageSource,
}
