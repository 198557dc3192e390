"""The local world: Azurite plus faithful peers (Entra ID, Key Vault, Dataverse, SAP S/4HANA,
the legacy mainframe and the Quoting Tool), a dev HTTP adapter for the Functions app and a local
Service Bus message dispatcher. Development and test tooling only; never deployed."""
