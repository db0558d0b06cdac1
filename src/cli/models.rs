//! `byollm models`: the model catalog and the models a configuration serves.

use clap::Args;

use super::{ConfigArgs, Failure, load_config};
use crate::ops::models_report::{catalog_table, served_table};

#[derive(Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: ModelsArgs) -> Result<(), Failure> {
    let config = load_config(&args.config, true)?;
    println!("Model catalog (src/models/catalog.toml):\n");
    print!("{}", catalog_table(crate::models::catalog()));
    println!("\nServed models:\n");
    print!("{}", served_table(&config.models));
    for warning in &config.warnings {
        println!("\nwarning: {warning}");
    }
    Ok(())
}
