//! What every reconcile of the ModelDeployment and ModelEvaluation controllers shares
//! (the FineTuneJob controller's holds the report endpoint's state as well).

use kube::Client;
use kube::runtime::events::Recorder;

use crate::config::OperatorConfig;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub config: OperatorConfig,
}
