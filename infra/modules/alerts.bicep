// Alerts (docs/operations.md explains each and what to do):
// - function failures: any invocation that failed, per function (HTTP 4xx answers are the
//   caller's mistake and are left out; 5xx and failed trigger invocations count);
// - dead letters: a queue's dead-letter sub-queue holds messages;
// - job lag: a scheduled job has not completed successfully for longer than its threshold.
//   Lag is read from the Functions host's own request telemetry (one `requests` row per
//   invocation, operation_Name = function name), so it needs no custom metric from the app.

@description('Azure region of the log alert rules.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Short name prefix of the alert rules.')
param namePrefix string

@description('Application Insights component the log alerts query.')
param applicationInsightsId string

@description('Service Bus namespace whose dead-letter counts are watched.')
param serviceBusNamespaceId string

@description('E-mail addresses notified by every alert (may be empty: alerts still fire in the portal).')
param alertEmailAddresses array

@description('Per scheduled function: minutes without a successful run before the lag alert fires.')
param jobLagThresholdMinutes object

var actionGroupName = '${namePrefix}-alerts'
var lagRows = [for job in items(jobLagThresholdMinutes): '"${job.key}", ${job.value}']
// The look-back of the lag query is two days (overrideQueryTimeRange). A job with no success in
// that time counts from the app's first telemetry in it, so a freshly deployed app is not reported
// as two days late; an app that sent nothing at all in two days is.
var lagQueryTemplate = '''
let lookback = 2d;
let expected = datatable(job: string, thresholdMinutes: long) [__JOBS__];
let since = toscalar(requests | where timestamp > ago(lookback) | summarize min(timestamp));
let lastSuccess = requests
    | where timestamp > ago(lookback) and success == true
    | summarize lastSuccessAt = max(timestamp) by job = operation_Name;
expected
| join kind=leftouter lastSuccess on job
| extend lagMinutes = datetime_diff('minute', now(), coalesce(lastSuccessAt, since, ago(lookback)))
| where lagMinutes > thresholdMinutes
| project job, lagMinutes, thresholdMinutes, lastSuccessAt
'''
var lagQuery = replace(lagQueryTemplate, '__JOBS__', join(lagRows, ', '))
var failureQuery = '''
requests
| where success == false
| extend code = toint(resultCode)
| where isnull(code) or code < 400 or code > 499
| project timestamp, operation_Name, resultCode, cloud_RoleInstance
'''

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take(actionGroupName, 12)
    enabled: true
    emailReceivers: [for (address, i) in alertEmailAddresses: {
      name: 'email-${i}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
  }
}

resource functionFailures 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-function-failures'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Data Hub: function failures'
    description: 'A function invocation failed (an unhandled exception or a 5xx answer). One alert per function. See docs/operations.md#function-failures.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: failureQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'operation_Name'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource jobLag 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-job-lag'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Data Hub: scheduled job lagging'
    description: 'A scheduled job has not completed successfully for longer than its threshold (jobLagThresholdMinutes). One alert per job. See docs/operations.md#job-lag.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    overrideQueryTimeRange: 'P2D'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: lagQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'job'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages are waiting in a dead-letter queue. One alert per queue. See docs/operations.md#dead-letters.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    targetResourceType: 'Microsoft.ServiceBus/namespaces'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered-messages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Average'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output actionGroupId string = actionGroup.id
