// The hub's user-assigned managed identity. User-assigned rather than system-assigned so that its
// client id is known before the Function App exists: the app settings (AZURE_CLIENT_ID,
// *__clientId) and every role assignment can be written in the same deployment, and the identity
// (with its grants) survives re-creating the app.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
